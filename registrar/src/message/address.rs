//! Addresses as text, written without `core::fmt`: an IPv4 address's `Display` goes through the
//! formatter for each octet and pads the result (a few hundred instructions), and every REGISTER
//! writes its source's address once or more (`received`; with Redis, the stored binding and the
//! authentication state's keys). IPv6 keeps `Display`, which knows its `::` and scope ids.

use std::net::{IpAddr, SocketAddr};

/// Appends `ip` as its `Display` writes it.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            let [a, b, c, d] = v4.octets();
            out.push_str(digits.format(a));
            for octet in [b, c, d] {
                out.push('.');
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => out.push_str(&v6.to_string()),
    }
}

/// `ip` as its `Display` writes it.
pub fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// `addr` as its `Display` writes it (`192.0.2.1:5060`, `[2001:db8::1]:5060`).
pub fn socket_addr_text(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut out = String::with_capacity(21);
    push_ip(&mut out, IpAddr::V4(*v4.ip()));
    out.push(':');
    out.push_str(itoa::Buffer::new().format(v4.port()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for text in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "192.0.2.10:5060",
            "10.0.100.7:1",
            "[2001:db8::1]:5061",
            "[::ffff:192.0.2.1]:5060",
            "[fe80::1%2]:5060",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(socket_addr_text(addr), addr.to_string(), "{text}");
            assert_eq!(ip_text(addr.ip()), addr.ip().to_string(), "{text}");
        }
    }
}
