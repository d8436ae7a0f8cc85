# The bridge's NIC is the bridge itself.
{
  modules.networking.bridge = {
    enable = true;
    interface = "br0";
  };
}
