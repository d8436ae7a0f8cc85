# One PCI device listed as a device and as a USB controller.
{
  virtualisation.vms.win11 = {
    pci.devices = [ "0000:0a:00.3" ];
    usb.controllers = [ "0000:0a:00.3" ];
  };
}
