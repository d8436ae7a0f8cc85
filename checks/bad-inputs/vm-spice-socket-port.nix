# A SPICE server on a unix socket has no port.
{
  virtualisation.vms.win11.spice = {
    listen = "socket";
    port = 5930;
  };
}
