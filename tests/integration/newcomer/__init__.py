"""The first day, as a newcomer lives it (issue 15's done-when): the README's quick start
and `make up` (test_readme_and_make.py), the first day itself from a private home, as the
suite's user and as an ordinary user (test_first_day.py), and a changed setting afterwards
(test_changed_settings.py).
"""
