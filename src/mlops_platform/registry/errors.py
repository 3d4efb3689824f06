"""What registry operations raise; every one of them means nothing was changed."""

from __future__ import annotations

from mlops_platform.errors import PlatformError


class RegistryError(PlatformError):
    """A registry operation cannot go ahead; nothing was changed."""


class ModelNotFoundError(RegistryError):
    """The registered model or version does not exist."""


class AliasNotFoundError(RegistryError):
    """The alias is not set on the model."""


class GatesFileError(RegistryError):
    """The gates file is missing, malformed or names something the run does not have."""


class DatasetError(RegistryError):
    """The evaluation dataset cannot be read or does not match the model's signature."""


class NotApprovedError(RegistryError):
    """The version has not passed the gates."""


class ArtifactsChangedError(NotApprovedError):
    """The version's artifacts are not the ones that were approved (or were never pinned)."""


class PromotionConflictError(RegistryError):
    """The alias moved while this promotion was deciding."""

    exit_code = 3


class LockTimeoutError(RegistryError):
    """Another promotion held the model's lock for longer than the wait bound."""

    exit_code = 3
