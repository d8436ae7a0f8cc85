//! `vfio-helper firmware-descriptor --code PATH --vars PATH`: print the QEMU
//! firmware descriptor of an OVMF build with Microsoft's Secure Boot keys,
//! for libvirt's firmware autoselection (see `vfio_helper::firmware`).

use std::process::ExitCode;

use vfio_helper::firmware;

#[derive(clap::Args)]
pub struct Args {
    /// The OVMF code image (Secure Boot and SMM build), e.g. OVMF_CODE.ms.fd.
    #[arg(long, value_name = "PATH")]
    code: String,
    /// Its variable store template with Microsoft's keys, e.g. OVMF_VARS.ms.fd.
    #[arg(long, value_name = "PATH")]
    vars: String,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    print!("{}", firmware::descriptor(&args.code, &args.vars)?);
    Ok(ExitCode::SUCCESS)
}
