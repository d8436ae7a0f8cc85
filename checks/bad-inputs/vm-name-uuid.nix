# virsh reads a UUID-shaped name as a domain UUID.
{
  virtualisation.vms."4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42" = { };
}
