//! The unit's network rules against this box's configuration, for `courtbox check`: the API
//! port against `SocketBindAllow=`, and the addresses the store, the TSA and the broadcast
//! outputs resolve to against `IPAddressAllow=` (the unit's defaults plus any drop-in). The
//! service meets a refused rule only as a failed bind or connection (EPERM); `check` names the
//! drop-in line that is missing before that happens.

use crate::config::LoadedConfig;
use crate::upload::{Finding, Level};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

/// The unit as installed (a copy in /etc overrides the package's), then its drop-ins, in
/// systemd's order.
const UNIT_FILES: &[&str] = &[
    "/etc/systemd/system/courtbox.service",
    "/usr/lib/systemd/system/courtbox.service",
    "/lib/systemd/system/courtbox.service",
];
const DROP_IN_DIRS: &[&str] = &["/etc/systemd/system/courtbox.service.d", "/run/systemd/system/courtbox.service.d"];

/// The allow rules of `setting` in force after the unit and its drop-ins, in order (an empty
/// assignment resets the list, as systemd does).
pub fn rules(setting: &str, texts: &[String]) -> Vec<String> {
    let mut rules = Vec::new();
    let prefix = format!("{setting}=");
    for text in texts {
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix(&prefix) {
                if value.trim().is_empty() {
                    rules.clear();
                }
                rules.extend(value.split_whitespace().map(String::from));
            }
        }
    }
    rules
}

/// Whether `IPAddressAllow=` rules let the service reach `ip`.
pub fn ip_allowed(ip: IpAddr, rules: &[String]) -> bool {
    rules.iter().any(|rule| match rule.as_str() {
        "any" => true,
        "localhost" => ip.is_loopback(),
        "link-local" => match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
        "multicast" => ip.is_multicast(),
        cidr => in_prefix(ip, cidr),
    })
}

/// `ADDRESS[/PREFIXLENGTH]` as systemd reads it.
fn in_prefix(ip: IpAddr, rule: &str) -> bool {
    let (addr, len) = rule.split_once('/').unwrap_or((rule, ""));
    let Ok(net) = addr.parse::<IpAddr>() else { return false };
    let bits = |ip: IpAddr| -> u128 {
        match ip {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            IpAddr::V6(v6) => u128::from(v6),
        }
    };
    let width = match (ip, net) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 32,
        (IpAddr::V6(_), IpAddr::V6(_)) => 128,
        _ => return false,
    };
    let len: u32 = if len.is_empty() { width } else { len.parse().unwrap_or(u32::MAX) };
    if len > width {
        return false;
    }
    let shift = width - len;
    len == 0 || (bits(ip) >> shift) == (bits(net) >> shift)
}

/// Whether `SocketBindAllow=` rules let the service listen on TCP `port`.
pub fn port_allowed(port: u16, rules: &[String]) -> bool {
    rules.iter().any(|rule| {
        if rule == "any" {
            return true;
        }
        let mut parts: Vec<&str> = rule.split(':').collect();
        let Some(ports) = parts.pop() else { return false };
        if parts.contains(&"udp") {
            return false;
        }
        let (low, high) = ports.split_once('-').unwrap_or((ports, ports));
        matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&port))
    })
}

/// The hosts this box connects to, by what the configuration names them for.
fn outside_hosts(cfg: &LoadedConfig) -> Vec<(String, String, u16)> {
    let c = &cfg.config;
    let mut out = Vec::new();
    let mut add = |what: String, url: &str, default_port: u16| {
        if let Ok(u) = reqwest::Url::parse(url)
            && let Some(host) = u.host_str()
        {
            out.push((
                what,
                host.trim_matches(['[', ']']).to_string(),
                u.port_or_known_default().unwrap_or(default_port),
            ));
        }
    };
    if c.store.enabled && c.store.url.as_deref().is_some_and(|u| u.starts_with("s3://")) {
        match &c.store.endpoint {
            Some(endpoint) => add("store.endpoint".into(), endpoint, 443),
            None => add("store (AWS S3)".into(), &format!("https://s3.{}.amazonaws.com", c.store.region), 443),
        }
    }
    if let Some(tsa) = &c.witness.tsa_url {
        add("witness.tsa_url".into(), tsa, 443);
    }
    for o in &c.broadcast.outputs {
        if let Some(url) = &o.url {
            add(format!("broadcast output {}", o.name), url, 1935);
        }
    }
    out
}

/// The installed unit and its drop-ins; `None` where the unit is not installed.
fn unit_texts() -> Option<Vec<String>> {
    let unit = UNIT_FILES.iter().find_map(|f| std::fs::read_to_string(f).ok())?;
    let mut texts = vec![unit];
    for dir in DROP_IN_DIRS {
        let Ok(entries) = std::fs::read_dir(Path::new(dir)) else { continue };
        let mut files: Vec<_> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension() == Some("conf".as_ref())).collect();
        files.sort();
        texts.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
    }
    Some(texts)
}

/// The `network` lines of `check`: nothing to compare where the unit is not installed (a
/// trial or a test outside systemd).
pub fn check_network(cfg: &LoadedConfig) -> Vec<Finding> {
    const BIND: &str = "api port";
    const REACH: &str = "network";
    let Some(texts) = unit_texts() else {
        return vec![Finding::new(
            REACH,
            Level::Ok,
            "courtbox.service is not installed here: no unit rules apply".into(),
        )];
    };
    let ip_rules = rules("IPAddressAllow", &texts);
    let bind_rules = rules("SocketBindAllow", &texts);
    let mut lines = Vec::new();
    match cfg.config.api.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if port_allowed(addr.port(), &bind_rules) => {
            lines.push(Finding::new(BIND, Level::Ok, format!("{addr}: the unit lets the service listen there")))
        }
        Ok(addr) => lines.push(Finding::new(
            BIND,
            Level::Fail,
            format!(
                "{addr} (api.listen): the unit's SocketBindAllow= does not allow port {port}; add it in a drop-in \
                 (`systemctl edit courtbox`: [Service] SocketBindAllow=tcp:{port})",
                port = addr.port()
            ),
        )),
        Err(_) => {}
    }
    let mut outside = Vec::new();
    for (what, host, port) in outside_hosts(cfg) {
        match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => {
                let refused: Vec<String> =
                    addrs.map(|a| a.ip()).filter(|ip| !ip_allowed(*ip, &ip_rules)).map(|ip| ip.to_string()).collect();
                if !refused.is_empty() {
                    outside.push(format!("{what} {host} ({})", refused.join(" ")));
                }
            }
            Err(e) => lines.push(Finding::new(REACH, Level::Warn, format!("{what} {host}: cannot resolve it ({e})"))),
        }
    }
    if outside.is_empty() {
        lines.push(Finding::new(REACH, Level::Ok, "every configured endpoint is in the unit's IPAddressAllow=".into()));
    } else {
        lines.push(Finding::new(
            REACH,
            Level::Warn,
            format!(
                "outside the unit's IPAddressAllow= (the court's network): {}; the service cannot reach them until a \
                 drop-in allows them (`systemctl edit courtbox`: [Service] IPAddressAllow=<addresses>, or \
                 IPAddressAllow=any)",
                outside.join(", ")
            ),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The unit this repository ships.
    fn unit() -> Vec<String> {
        vec![include_str!("../../systemd/courtbox.service").to_string()]
    }

    #[test]
    fn the_units_default_is_the_courts_network() {
        let r = rules("IPAddressAllow", &unit());
        assert!(!r.is_empty());
        for inside in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.10",
            "169.254.1.1",
            "fe80::1",
            "fd12::1",
        ] {
            assert!(ip_allowed(ip(inside), &r), "{inside}");
        }
        for outside in ["8.8.8.8", "172.32.0.1", "203.0.113.7", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!ip_allowed(ip(outside), &r), "{outside}");
        }
    }

    #[test]
    fn drop_ins_add_and_reset() {
        let with = |drop_in: &str| {
            let mut texts = unit();
            texts.push(drop_in.to_string());
            rules("IPAddressAllow", &texts)
        };
        let r = with("[Service]\nIPAddressAllow=203.0.113.7 198.51.100.0/24\n");
        assert!(
            ip_allowed(ip("203.0.113.7"), &r) && ip_allowed(ip("198.51.100.99"), &r) && ip_allowed(ip("127.0.0.1"), &r)
        );
        assert!(!ip_allowed(ip("203.0.113.8"), &r));
        let r = with("[Service]\nIPAddressAllow=\nIPAddressAllow=203.0.113.7\n");
        assert!(!ip_allowed(ip("127.0.0.1"), &r) && ip_allowed(ip("203.0.113.7"), &r));
        assert!(ip_allowed(ip("8.8.8.8"), &with("[Service]\nIPAddressAllow=any\n")));
    }

    #[test]
    fn bind_rules_as_systemd_reads_them() {
        let r = rules("SocketBindAllow", &unit());
        let default_port = crate::config::ApiConfig::default().listen.rsplit(':').next().unwrap().parse().unwrap();
        assert!(port_allowed(default_port, &r) && port_allowed(8443, &r));
        assert!(!port_allowed(8090, &r) && !port_allowed(443, &r));
        let mut texts = unit();
        texts.push("[Service]\nSocketBindAllow=ipv6:tcp:9000-9100\nSocketBindAllow=udp:443\n".into());
        let r = rules("SocketBindAllow", &texts);
        assert!(port_allowed(9050, &r) && !port_allowed(443, &r));
        assert!(port_allowed(1, &["any".to_string()]));
    }
}
