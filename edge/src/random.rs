//! Random bytes from the runtime's `crypto.getRandomValues`, for seeds and nonces (never
//! `Math.random`, which is not meant for secrets).

use worker::js_sys::{global, Function, Reflect, Uint8Array};
use worker::Result;

/// `N` bytes from the Web Crypto generator of the runtime.
pub(crate) fn bytes<const N: usize>() -> Result<[u8; N]> {
    let crypto = Reflect::get(&global(), &"crypto".into())?;
    let fill: Function = Reflect::get(&crypto, &"getRandomValues".into())?.into();
    let out = Uint8Array::new_with_length(N as u32);
    fill.call1(&crypto, &out)?;
    let mut bytes = [0u8; N];
    out.copy_to(&mut bytes);
    Ok(bytes)
}
