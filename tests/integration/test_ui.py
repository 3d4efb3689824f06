"""The MLflow UI works for every role: a real browser, through the real proxy, on the real server.

Debian's Chromium (`/usr/bin/chromium`, installed by `make system-deps`) driven by
Playwright (the `test` extra pins a release whose driver accepts it; `playwright install`
is never run). Each role logs in with its own basic-auth credentials at nginx; the
tracking server's permission engine decides. What the tests prove, role by role:

- viewer: lists the experiments the admin created; the UI's Create and Edit dialogs show
  the server's 403 and nothing changes (checked over REST as the admin);
- editor: creates an experiment in the UI, renames it and writes its description;
  moving @champion is refused with the server's message;
- approver: moves @champion to another version in the UI;
- every role: the model registry lists the model and shows each alias on its version;
- admin: sees and edits what others own.

Every check waits for a concrete element (a link with the experiment's name, a table row
with the alias, the server's own error text) that a 401 or 403 page would not have;
`test_wrong_password_gets_no_ui` shows the same checks failing at the proxy.

One module, because its tests share one module-scoped browser (`browser`, Chromium under
Playwright) and the users and objects it looks at (`people`, `world`); split, each part
would start and make its own.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import Platform
from tests.support.users import add_role_users

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Error,
        Locator,
        Page,
        Response,
        expect,
        sync_playwright,
    )

    HAVE_PLAYWRIGHT = True
except ImportError:  # the `browser` fixture fails with what to install
    HAVE_PLAYWRIGHT = False

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# How long a wait for an element may last on a loaded machine: a bound, not a measurement.
WAIT_MS = 90_000
INSTALL = (
    "install them with `make system-deps` (apt-get install -y chromium) and "
    '`pip install -e ".[test]"` (playwright==1.64.*); never `playwright install`'
)


class Rest:
    """One user's REST session through the proxy (setup and after-the-fact checks)."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password
        self.session = requests.Session()
        self.session.auth = (user, password)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        params, payload = (body, None) if method == "GET" else (None, body)
        return self.session.request(
            method, self.base + API + path, params=params, json=payload, timeout=60
        )

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.call(method, path, body)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json() if response.content else {}

    def experiment(self, name: str) -> dict[str, Any] | None:
        response = self.call("GET", "/experiments/get-by-name", {"experiment_name": name})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, (name, response.status_code, response.text)
        return response.json()["experiment"]

    def aliases(self, model: str) -> dict[str, str]:
        got = self.ok("GET", "/registered-models/get", {"name": model})["registered_model"]
        return {a["alias"]: a["version"] for a in got.get("aliases", [])}


@pytest.fixture(scope="module")
def people(platform: Platform) -> dict[str, Rest]:
    out = {"admin": Rest(platform.url, platform.user, platform.password)}
    for role, (name, password) in add_role_users(platform, "ui-").items():
        out[role] = Rest(platform.url, name, password)
    return out


def _model_with_versions(
    admin: Rest, name: str, run: dict[str, Any], count: int, **aliases: str
) -> None:
    """Model NAME with COUNT versions of RUN, and ALIASES (alias=version) set in order."""
    admin.ok("POST", "/registered-models/create", {"name": name})
    for _ in range(count):
        admin.ok(
            "POST",
            "/model-versions/create",
            {"name": name, "source": run["artifact_uri"], "run_id": run["run_id"]},
        )
    for alias, version in aliases.items():
        admin.ok(
            "POST",
            "/registered-models/alias",
            {"name": name, "alias": alias, "version": version},
        )


@pytest.fixture(scope="module")
def world(people: dict[str, Rest]) -> dict[str, str]:
    """Made over REST: the admin's experiment and models, an experiment the editor owns."""
    admin, tag = people["admin"], uuid.uuid4().hex[:8]
    exp_name = f"ui-admin-exp-{tag}"
    exp = admin.ok("POST", "/experiments/create", {"name": exp_name})["experiment_id"]
    run = admin.ok("POST", "/runs/create", {"experiment_id": exp})["run"]["info"]
    # Shown to every role: @champion on version 2, @challenger on version 1.
    shown = f"ui-model-{tag}"
    _model_with_versions(admin, shown, run, 2, champion="2", challenger="1")
    # Promoted in the UI: @champion starts on version 1.
    promoted = f"ui-promote-{tag}"
    _model_with_versions(admin, promoted, run, 2, champion="1")
    # Its @challenger is removed in the UI.
    retired = f"ui-retire-{tag}"
    _model_with_versions(admin, retired, run, 1, challenger="1")
    editors_name = f"ui-editor-exp-{tag}"
    editors = people["editor"].ok("POST", "/experiments/create", {"name": editors_name})
    return {
        "tag": tag,
        "exp": exp,
        "exp_name": exp_name,
        "model": shown,
        "promoted": promoted,
        "retired": retired,
        "editors_exp": editors["experiment_id"],
        "editors_exp_name": editors_name,
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright; missing either fails with what to install."""
    if not HAVE_PLAYWRIGHT:
        pytest.fail(f"the UI tests need Playwright: {INSTALL}", pytrace=False)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.fail(f"the UI tests need Chromium at /usr/bin/chromium: {INSTALL}", pytrace=False)
    with sync_playwright() as playwright:
        try:  # launch() gives every browser a fresh, throwaway profile
            browser = playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, headless=True
            )
        except Error as exc:
            pytest.fail(f"Chromium ({chromium}) did not start: {exc}\n{INSTALL}", pytrace=False)
        expect.set_options(timeout=WAIT_MS)
        yield browser
        browser.close()


@pytest.fixture
def page_as(
    browser: Browser, platform: Platform, tmp_path: Path
) -> Iterator[Callable[[str, str], Page]]:
    """A page logged in at the proxy as USER/PASSWORD, each in its own browser context."""
    contexts: list[BrowserContext] = []

    def open_page(user: str, password: str) -> Page:
        context = browser.new_context(
            base_url=platform.url,
            http_credentials={"username": user, "password": password},
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        # The registry shows a one-time "new Model Registry UI" dialog over the page, at a
        # moment of its own choosing; it takes the keyboard focus. Close it whenever it shows.
        promo = page.get_by_role("dialog", name=re.compile("new Model Registry UI"))
        page.add_locator_handler(promo, lambda: promo.get_by_role("button", name="Close").click())
        return page

    yield open_page
    for number, context in enumerate(contexts):  # what each page last showed, for a failure
        for page in context.pages:
            with contextlib.suppress(Error):
                page.screenshot(path=str(tmp_path / f"page-{number}.png"), full_page=True)
        context.close()


def as_role(page_as: Callable[[str, str], Page], who: Rest) -> Page:
    return page_as(who.user, who.password)


def is_call(method: str, route: str) -> Callable[[Response], bool]:
    """The UI's own call of ROUTE (it uses /ajax-api/2.0/mlflow/..., the same handlers)."""
    return lambda r: (
        r.request.method == method and r.url.split("?")[0].endswith("/2.0/mlflow" + route)
    )


def search_experiments(page: Page, name: str) -> Locator:
    """The experiments page filtered to NAME; returns the link to it."""
    page.goto("/#/experiments")
    expect(page.get_by_role("heading", name="Experiments", exact=True)).to_be_visible()
    box = page.get_by_placeholder("Search experiments")
    box.fill(name)
    box.press("Enter")  # on the box itself: a dialog may have taken the focus
    # The list's own link: while the hash route changes, the experiment page just left can
    # still show a breadcrumb link of the same name.
    listed = page.get_by_test_id("experiment-list-item-link")
    return listed.and_(page.get_by_role("link", name=name, exact=True))


def open_edit_dialog(page: Page, experiment_id: str) -> Locator:
    page.goto(f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    page.get_by_role("button", name="Open header dropdown menu").click()
    page.get_by_role("menuitem", name="Edit experiment").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Experiment name")).to_be_visible()
    return dialog


def create_experiment(page: Page, name: str) -> tuple[Locator, Response]:
    """NAME typed into the UI's Create dialog and submitted: the dialog, the server's answer."""
    page.get_by_role("button", name="Create", exact=True).click()
    # the Create dialog, not any dialog: the experiment page the UI goes to next may open
    # a guidance popover (role "dialog" too) that stays while the test goes on
    dialog = page.get_by_role("dialog").filter(has=page.get_by_label("Experiment Name"))
    dialog.get_by_label("Experiment Name").fill(name)
    with page.expect_response(is_call("POST", "/experiments/create")) as answer:
        dialog.get_by_role("button", name="Create", exact=True).click()
    return dialog, answer.value


def save_note(page: Page, dialog: Locator, note: str, admin: Rest, experiment_id: str) -> Any:
    """NOTE as the description in the open edit DIALOG, saved: the server accepts it, the
    page shows it and the admin reads it back. The experiment as the admin sees it."""
    dialog.get_by_label("Description").fill(note)
    with page.expect_response(is_call("POST", "/experiments/set-experiment-tag")) as tagged:
        dialog.get_by_role("button", name="Save", exact=True).click()
    assert tagged.value.status == 200, tagged.value.text()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("paragraph").filter(has_text=note)).to_be_visible()
    after = admin.ok("GET", "/experiments/get", {"experiment_id": experiment_id})["experiment"]
    tags = {t["key"]: t["value"] for t in after.get("tags", [])}
    assert tags.get("mlflow.note.content") == note
    return after


def alias_tag(scope: Locator, alias: str) -> Locator:
    """The UI's "@ alias" tag (an ARIA status element named after the alias)."""
    return scope.get_by_role("status", name=alias, exact=True)


def version_row(page: Page, version: str) -> Locator:
    return page.get_by_role("row").filter(
        has=page.get_by_role("link", name=f"Version {version}", exact=True)
    )


def test_viewer_lists_experiments_and_cannot_create_one(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    viewer, admin = people["viewer"], people["admin"]
    page = as_role(page_as, viewer)
    expect(search_experiments(page, world["exp_name"])).to_be_visible()
    expect(page.get_by_role("button", name=viewer.user)).to_be_visible()  # who is logged in

    name = f"ui-viewer-try-{world['tag']}"
    refusal = viewer.call("POST", "/experiments/create", {"name": f"{name}-rest"})
    assert refusal.status_code == 403, refusal.text
    dialog, answer = create_experiment(page, name)
    assert answer.status == 403
    expect(dialog.get_by_text(refusal.json()["message"])).to_be_visible()
    assert admin.experiment(name) is None
    assert admin.experiment(f"{name}-rest") is None


def test_viewer_cannot_edit_an_experiment(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    page = as_role(page_as, people["viewer"])
    dialog = open_edit_dialog(page, world["exp"])
    dialog.get_by_label("Experiment name").fill(f"ui-viewer-renamed-{world['tag']}")
    dialog.get_by_label("Description").fill("the viewer was here")
    with page.expect_response(is_call("POST", "/experiments/update")) as answer:
        dialog.get_by_role("button", name="Save", exact=True).click()
    assert answer.value.status == 403
    expect(dialog.get_by_text("Permission denied")).to_be_visible()
    after = people["admin"].ok("GET", "/experiments/get", {"experiment_id": world["exp"]})
    assert after["experiment"]["name"] == world["exp_name"]
    assert "mlflow.note.content" not in {t["key"] for t in after["experiment"].get("tags", [])}


def test_editor_creates_renames_and_describes_an_experiment(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    editor, admin = people["editor"], people["admin"]
    page = as_role(page_as, editor)
    expect(search_experiments(page, world["exp_name"])).to_be_visible()

    name = f"ui-editor-made-{world['tag']}"
    dialog, answer = create_experiment(page, name)
    assert answer.status == 200, answer.text()
    made = admin.experiment(name)
    assert made is not None and made["experiment_id"] == answer.json()["experiment_id"]
    # The UI closes its dialog and goes to the new experiment by itself: its page, then a
    # tab of its choosing (runs, or the GenAI overview with a guidance popover). A goto of
    # ours racing those steps once left a page without the experiment's header (a loaded
    # machine, the whole suite on three workers): the UI's own navigation ends first.
    expect(dialog).to_be_hidden()
    expect(page).to_have_url(re.compile(rf"#/experiments/{made['experiment_id']}/\w+"))

    renamed, note = f"ui-editor-renamed-{world['tag']}", f"written in the browser {world['tag']}"
    dialog = open_edit_dialog(page, made["experiment_id"])
    dialog.get_by_label("Experiment name").fill(renamed)
    after = save_note(page, dialog, note, admin, made["experiment_id"])
    assert after["name"] == renamed
    expect(search_experiments(page, renamed)).to_be_visible()


@pytest.mark.parametrize("role", ["viewer", "editor", "approver", "admin"])
def test_registry_shows_the_model_and_its_aliases(
    role: str,
    page_as: Callable[[str, str], Page],
    people: dict[str, Rest],
    world: dict[str, str],
) -> None:
    page = as_role(page_as, people[role])
    page.goto("/#/models")
    box = page.get_by_placeholder("Search registered models")
    box.fill(world["model"])
    box.press("Enter")  # on the box itself: a dialog may have taken the focus
    listed = page.get_by_role("row").filter(
        has=page.get_by_role("link", name=world["model"], exact=True)
    )
    # The list shows the newest alias and "+1" for the other one.
    champion = page.get_by_role("status", name="champion", exact=True)
    expect(listed.get_by_role("link").filter(has=champion)).to_contain_text("Version 2")

    page.goto(f"/#/models/{world['model']}")
    expect(page.get_by_role("heading", name=world["model"])).to_be_visible()
    expect(alias_tag(version_row(page, "2"), "champion")).to_be_visible()
    expect(alias_tag(version_row(page, "1"), "challenger")).to_be_visible()
    expect(version_row(page, "2")).not_to_contain_text("challenger")
    expect(version_row(page, "1")).not_to_contain_text("champion")


def _move_champion_in_ui(page: Page, model: str, version: str) -> tuple[Response, Locator]:
    """Open VERSION's alias editor, add @champion, save; returns (answer, dialog)."""
    page.goto(f"/#/models/{model}")
    row = version_row(page, version)
    row.get_by_role("button").last.click()  # the pencil beside the aliases
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"alias for model version {version}")).to_be_visible()
    dialog.get_by_role("combobox").fill("champion")
    page.keyboard.press("Enter")
    with page.expect_response(is_call("POST", "/registered-models/alias")) as answer:
        dialog.get_by_role("button", name="Save aliases").click()
    return answer.value, dialog


def test_protected_alias_editor_refused_approver_moves_it(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    admin, model = people["admin"], world["promoted"]
    editor = people["editor"]
    answer, dialog = _move_champion_in_ui(as_role(page_as, editor), model, "2")
    assert answer.status == 403
    refusal = editor.call(
        "POST", "/registered-models/alias", {"name": model, "alias": "champion", "version": "2"}
    )
    assert refusal.status_code == 403, refusal.text
    expect(dialog.get_by_text(refusal.json()["message"])).to_be_visible()
    assert admin.aliases(model) == {"champion": "1"}

    page = as_role(page_as, people["approver"])
    answer, _ = _move_champion_in_ui(page, model, "2")
    assert answer.status == 200, answer.text()
    assert admin.aliases(model) == {"champion": "2"}
    page.reload()
    expect(alias_tag(version_row(page, "2"), "champion")).to_be_visible()
    expect(version_row(page, "1")).not_to_contain_text("champion")


def test_approver_removes_a_protected_alias(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    admin, model = people["admin"], world["retired"]
    page = as_role(page_as, people["approver"])
    page.goto(f"/#/models/{model}")
    version_row(page, "1").get_by_role("button").last.click()  # the pencil beside the aliases
    dialog = page.get_by_role("dialog")
    alias_tag(dialog, "challenger").get_by_role("button").click()  # the tag's close button
    with page.expect_response(is_call("DELETE", "/registered-models/alias")) as answer:
        dialog.get_by_role("button", name="Save aliases").click()
    assert answer.value.status == 200, answer.value.text()
    assert admin.aliases(model) == {}


def test_admin_sees_and_edits_what_others_own(
    page_as: Callable[[str, str], Page], people: dict[str, Rest], world: dict[str, str]
) -> None:
    admin = people["admin"]
    page = as_role(page_as, admin)
    expect(search_experiments(page, world["exp_name"])).to_be_visible()
    expect(search_experiments(page, world["editors_exp_name"])).to_be_visible()

    note = f"reviewed by the admin {world['tag']}"
    dialog = open_edit_dialog(page, world["editors_exp"])
    save_note(page, dialog, note, admin, world["editors_exp"])


def test_wrong_password_gets_no_ui(
    page_as: Callable[[str, str], Page], people: dict[str, Rest]
) -> None:
    """The control: what the checks above look for is absent when the proxy refuses."""
    page = page_as(people["viewer"].user, "not-" + people["viewer"].password)
    app_calls: list[str] = []
    page.on("request", lambda r: app_calls.append(r.url) if "/ajax-api/" in r.url else None)
    answer = page.goto("/#/experiments")
    assert answer is not None and answer.status == 401
    page.wait_for_load_state("load")  # nginx's static error page: no script, nothing to come
    expect(page.get_by_text("401 Authorization Required").first).to_be_visible()
    assert page.get_by_role("heading", name="Experiments", exact=True).count() == 0
    assert page.get_by_placeholder("Search experiments").count() == 0
    assert app_calls == []
