# Vendor 0000, which libvirt reads as no vendor.
{
  virtualisation.vms.win11.usb.devices = [
    { vendorId = "0000"; productId = "0001"; }
  ];
}
