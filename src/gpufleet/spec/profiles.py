"""Built-in hardware profiles.

A site may add its own under `profiles:` in cluster.yaml; the built-in names
are reserved.

Sources for the HGX H100 figures: NVIDIA HGX H100 and DGX H100 user guides
(8 x H100 SXM5 80 GB on NVLink 4 through 4 third-generation NVSwitch chips,
Fabric Manager required on NVSwitch systems; 8 x ConnectX-7 400 Gb/s for the
compute fabric, one per GPU, on PCIe Gen5 x16). NVLink links per GPU: NVIDIA H100
Tensor Core GPU Architecture whitepaper (H100 SXM5: 18 fourth-generation NVLink
links, 900 GB/s); the `nvidia-smi nvlink -s` recording of an 8 x H100 node in
src/gpufleet/lab/replay/recordings (nvidia-smi-nvlink-s-p5-48xlarge-550.90.07-8xh100.txt)
lists 18 links per GPU. The recordings under
/work/shared/reference/hardware (ibstat: 8 ports of MT4129 at rate 400 for both
the IB NDR and the RoCE node) agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpufleet.spec.models import ClusterSpec, Node, Profile

BUILTIN_PROFILES: dict[str, Profile] = {
    "hgx-h100-8gpu-ib": Profile(
        description="HGX H100 8-GPU, NVSwitch, 8 x ConnectX-7 InfiniBand NDR 400G",
        gpu_count=8,
        gpu_model="H100-SXM5-80GB",
        fabric_nics=8,
        fabric_link="infiniband",
        fabric_link_gbps=400,
        pcie_gen=5,
        pcie_width=16,
        nvswitch=True,
        fabric_manager=True,
        nvlinks_per_gpu=18,
    ),
    "hgx-h100-8gpu-roce": Profile(
        description="HGX H100 8-GPU, NVSwitch, 8 x ConnectX-7 400G Ethernet (RoCE v2)",
        gpu_count=8,
        gpu_model="H100-SXM5-80GB",
        fabric_nics=8,
        fabric_link="roce",
        fabric_link_gbps=400,
        pcie_gen=5,
        pcie_width=16,
        nvswitch=True,
        fabric_manager=True,
        nvlinks_per_gpu=18,
    ),
    "cpu-server": Profile(
        description="CPU server (head, load balancer, monitoring): no GPU, not on the fabric",
        gpu_count=0,
        fabric_nics=0,
    ),
    "lab": Profile(
        description="lab container node: no GPU, 2 emulated fabric rails on podman networks",
        gpu_count=0,
        fabric_nics=2,
        fabric_link="ethernet",
        container=True,
        # gpufleet.lab names the container's interfaces: eth0 is the frontend, the rails follow.
        fabric_netdevs=["eth1", "eth2"],
    ),
}


def known_profiles(spec: ClusterSpec) -> Mapping[str, Profile]:
    """Built-in profiles and the site's own (the site may not redefine a built-in)."""
    return {**BUILTIN_PROFILES, **spec.profiles}


def profile_name(spec: ClusterSpec, node: Node) -> str | None:
    """The profile a node names, else its role's default; None when neither is set.

    The one place the default applies: gpufleet.model resolves every node through it.
    """
    return node.profile if node.profile is not None else spec.defaults.profiles.get(node.role)
