"""User-facing errors: their text is the whole message an operator reads."""

from __future__ import annotations


class VetError(Exception):
    """A problem the operator can act on; the CLI prints it without a traceback."""


class InventoryError(VetError):
    """The inventory is wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(VetError):
    """The run store cannot be opened or is from a newer vet."""


class IllegalTransition(VetError):
    """A host was asked to move between states the pipeline does not connect."""


class ToolMissing(VetError):
    """A vetting tool is not installed on the host; names the package to install."""

    @classmethod
    def for_tool(cls, host: str, tool: str, package: str | None = None) -> ToolMissing:
        package = package or tool
        return cls(
            f"host {host}: `{tool}` is not installed; install the Debian package "
            f"'{package}' on the host (apt-get install {package}) or use the vet live "
            "image, which has it"
        )


class ConsoleDeath(VetError):
    """The serial console showed the host dying (panic, machine check, reboot...)."""
