# users, not user.
{
  modules.vfio.lookingGlass = {
    enable = true;
    user = [ "draxel" ];
  };
}
