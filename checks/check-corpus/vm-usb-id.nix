# USB IDs are lower-case hex, as `lsusb` prints them.
{
  virtualisation.vms.win11.usb.devices = [
    {
      vendorId = "046D";
      productId = "c52b";
    }
  ];
}
