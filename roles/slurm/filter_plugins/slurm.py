"""The Slurm rendering filters (gpufleet.slurm) for the slurm role: gpufleet_slurmd_hardware,
gpufleet_slurm_node_line, gpufleet_slurm_gres_gpus, gpufleet_slurm_topology."""

from gpufleet.slurm import FilterModule

__all__ = ["FilterModule"]
