"""The fabric filters (gpufleet.fabric.filters) for the rdma_stack role and playbooks/fabric.yml:
gpufleet_interface_of, gpufleet_nccl_conf, gpufleet_roce_qos, gpufleet_fabric_firmware."""

from gpufleet.fabric.filters import FilterModule

__all__ = ["FilterModule"]
