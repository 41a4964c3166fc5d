"""The nccl-tests build command of the verification phase (gpufleet.verify.launch) as the
filter gpufleet_nccl_tests_build: the role runs the command the unit tests read."""

from gpufleet.verify.launch import build_command


def _build(version: str, cuda: str, source_dir: str, build_dir: str) -> list[str]:
    return build_command(version, cuda, source_dir, build_dir)


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"gpufleet_nccl_tests_build": _build}
