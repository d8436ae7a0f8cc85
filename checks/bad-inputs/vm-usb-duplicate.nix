# The same USB device twice.
{
  virtualisation.vms.win11.usb.devices = [
    { vendorId = "046d"; productId = "c52b"; }
    { vendorId = "1532"; productId = "0084"; }
    { vendorId = "046d"; productId = "c52b"; }
  ];
}
