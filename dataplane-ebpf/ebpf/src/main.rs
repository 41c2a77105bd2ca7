//! gatekey's TC filter program (see the crate docs in `lib.rs`).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_OK,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};

#[map(name = "PROTO_COUNTS")]
static PROTO_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(256, 0);

const ETH_LEN: usize = 14;
/// EtherTypes as they appear when a big-endian u16 is loaded on little-endian.
const ETH_P_IP: u16 = 0x0800_u16.to_be();
const ETH_P_IPV6: u16 = 0x86dd_u16.to_be();

/// Counts every IPv4/IPv6 packet by its (first) protocol number and passes it.
#[classifier]
pub fn gatekey_count(ctx: TcContext) -> i32 {
    let _ = count(&ctx);
    TC_ACT_OK
}

fn count(ctx: &TcContext) -> Result<(), ()> {
    let ether: u16 = ctx.load::<u16>(12).map_err(|_| ())?;
    let proto: u8 = match ether {
        ETH_P_IP => ctx.load::<u8>(ETH_LEN + 9).map_err(|_| ())?,
        ETH_P_IPV6 => ctx.load::<u8>(ETH_LEN + 6).map_err(|_| ())?,
        _ => return Ok(()),
    };
    if let Some(slot) = PROTO_COUNTS.get_ptr_mut(u32::from(proto)) {
        // SAFETY: the pointer comes from the map lookup and points at this
        // CPU's u64 slot; no other program instance runs on this CPU now.
        unsafe { *slot += 1 };
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
