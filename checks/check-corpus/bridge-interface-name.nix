# An interface name has at most 15 characters.
{
  modules.networking.bridge = {
    enable = true;
    interface = "enp6s0-with-a-long-name";
  };
}
