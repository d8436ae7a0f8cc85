# A bridge without the physical NIC to put into it.
{
  modules.networking.bridge.enable = true;
}
