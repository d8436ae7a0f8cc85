# More USB devices than the VM's USB controller has ports.
{
  virtualisation.vms.win11.usb.devices = [
    { vendorId = "046d"; productId = "c500"; }
    { vendorId = "046d"; productId = "c501"; }
    { vendorId = "046d"; productId = "c502"; }
    { vendorId = "046d"; productId = "c503"; }
    { vendorId = "046d"; productId = "c504"; }
    { vendorId = "046d"; productId = "c505"; }
    { vendorId = "046d"; productId = "c506"; }
    { vendorId = "046d"; productId = "c507"; }
    { vendorId = "046d"; productId = "c508"; }
    { vendorId = "046d"; productId = "c509"; }
    { vendorId = "046d"; productId = "c50a"; }
    { vendorId = "046d"; productId = "c50b"; }
    { vendorId = "046d"; productId = "c50c"; }
    { vendorId = "046d"; productId = "c50d"; }
    { vendorId = "046d"; productId = "c50e"; }
    { vendorId = "046d"; productId = "c50f"; }
  ];
}
