//! The AMD reset bug: the cards vendor-reset (gnif/vendor-reset) knows how to
//! reset, by PCI ID. AMD's Polaris, Vega and Navi 10/12/14 cards cannot be
//! reset by any method the kernel has (FLR, bus reset, power management):
//! once a VM has used one, the next start hangs or the card reads back as
//! all ones, until the host reboots.
//!
//! The table is vendor-reset's `src/device-db.h` (master 084881c), with the
//! common names of its README, and is the same as the one in
//! `modules/vfio/reset-bug.nix`, which turns `modules.vfio.vendorReset.enable`
//! on for these cards; `tests/reset_bug.rs` keeps the two equal.

use super::report::ResetBug;

/// `PCI_VENDOR_ID_ATI`: every card in the table is AMD's.
pub const VENDOR: u16 = 0x1002;

/// One family of cards with the reset bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// `Polaris 10`.
    pub family: &'static str,
    /// The common names: `RX 470, 480, 570, 580, 590`.
    pub cards: &'static str,
    /// Device IDs (vendor [`VENDOR`]).
    pub devices: &'static [u16],
}

/// vendor-reset's device list, in its order. Arcturus (Instinct MI100) uses
/// the Vega 20 reset.
pub const FAMILIES: &[Family] = &[
    Family {
        family: "Polaris 10",
        cards: "RX 470, 480, 570, 580, 590",
        devices: &[
            0x67c0, 0x67c1, 0x67c2, 0x67c4, 0x67c7, 0x67d0, 0x67df, 0x67c8, 0x67c9, 0x67ca, 0x67cc,
            0x67cf, 0x6fdf,
        ],
    },
    Family {
        family: "Polaris 11",
        cards: "RX 460, 560",
        devices: &[
            0x67e0, 0x67e3, 0x67e8, 0x67eb, 0x67ef, 0x67ff, 0x67e1, 0x67e7, 0x67e9,
        ],
    },
    Family {
        family: "Polaris 12",
        cards: "RX 540, 550",
        devices: &[
            0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699f,
        ],
    },
    Family {
        family: "Vega 10",
        cards: "Vega 56, Vega 64, Vega Frontier Edition",
        devices: &[
            0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686a, 0x686b, 0x686c,
            0x686d, 0x686e, 0x686f, 0x687f,
        ],
    },
    Family {
        family: "Vega 20",
        cards: "Radeon VII",
        devices: &[0x66a0, 0x66a1, 0x66a2, 0x66a3, 0x66a4, 0x66a7, 0x66af],
    },
    Family {
        family: "Navi 10",
        cards: "RX 5600 XT, 5700, 5700 XT",
        devices: &[
            0x7310, 0x7312, 0x7318, 0x7319, 0x731a, 0x731b, 0x731e, 0x731f,
        ],
    },
    Family {
        family: "Navi 14",
        cards: "Pro 5300, RX 5300, 5500 XT",
        devices: &[0x7340, 0x7341, 0x7347, 0x734f],
    },
    Family {
        family: "Navi 12",
        cards: "Pro 5600M",
        devices: &[0x7360, 0x7362],
    },
    Family {
        family: "Arcturus",
        cards: "Instinct MI100",
        devices: &[0x738c],
    },
];

/// The family of the card `vendor:device` (hex, as sysfs and `lspci -n`
/// write them), if it has the reset bug.
pub fn lookup(vendor: &str, device: &str) -> Option<&'static Family> {
    let vendor = u16::from_str_radix(vendor, 16).ok()?;
    let device = u16::from_str_radix(device, 16).ok()?;
    if vendor != VENDOR {
        return None;
    }
    FAMILIES.iter().find(|f| f.devices.contains(&device))
}

/// [`lookup`] of a `vendor:device` ID.
pub fn lookup_id(pci_id: &str) -> Option<&'static Family> {
    let (vendor, device) = pci_id.split_once(':')?;
    if vendor.len() != 4 || device.len() != 4 {
        return None;
    }
    lookup(vendor, device)
}

impl Family {
    /// The report's form of the family.
    pub fn report(&self) -> ResetBug {
        ResetBug {
            family: self.family.to_string(),
            cards: self.cards.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_vendor_resets_67_ids_once_each() {
        let mut all: Vec<u16> = FAMILIES.iter().flat_map(|f| f.devices).copied().collect();
        assert_eq!(all.len(), 67);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 67, "an ID is listed twice");
    }

    #[test]
    fn lookup_takes_sysfs_and_lspci_forms() {
        assert_eq!(lookup("1002", "67df").unwrap().family, "Polaris 10");
        assert_eq!(lookup_id("1002:687f").unwrap().family, "Vega 10");
        assert_eq!(lookup_id("1002:738c").unwrap().cards, "Instinct MI100");
        // Upper case, as lspci never writes it, still names the card.
        assert_eq!(lookup_id("1002:67DF").unwrap().family, "Polaris 10");
        // Not AMD, not in the table, not an ID.
        assert!(lookup_id("10de:67df").is_none());
        assert!(lookup_id("1002:73bf").is_none());
        assert!(lookup_id("1002:67df:0").is_none());
        assert!(lookup_id("????:67df").is_none());
        assert!(lookup_id("").is_none());
    }
}
