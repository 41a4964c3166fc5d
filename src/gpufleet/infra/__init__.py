"""Pulumi components and dynamic providers of stacks/cluster (see docs/pulumi.md).

Type tokens: gpufleet:baremetal:BareMetalNode, gpufleet:network:AddressPlan,
gpufleet:network:LoadBalancerVips, gpufleet:inventory:Inventory,
gpufleet:configure:Configure. Redfish operations live in gpufleet.infra.redfish.
"""
