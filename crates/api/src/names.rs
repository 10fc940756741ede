//! Kubernetes names: what `metadata.name` and `metadata.namespace` may be, and label keys and
//! values derived from them that stay within Kubernetes' 63-character limits.
//!
//! Names become paths (run directories, tier and meta directories, mount points) and label
//! keys, so they are checked at the boundary: a name accepted here has no `/`, no `..` and no
//! NUL, so every path made from it is a direct child of its root.

/// Kubernetes' limit on a label value and on the name part of a label key.
pub const LABEL_MAX: usize = 63;

/// Checks a DNS-1123 label (a namespace): lowercase letters, digits and `-`, starting and
/// ending with a letter or digit, at most 63 characters.
pub fn check_label(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= LABEL_MAX
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{}` is not a valid Kubernetes name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            value.escape_debug()
        ))
    }
}

/// Checks a DNS-1123 subdomain (the name of a Dataset or runtime, as Kubernetes and Fluid
/// accept them): dot-separated labels, at most 253 characters.
pub fn check_subdomain(field: &str, value: &str) -> Result<(), String> {
    let fail = || {
        Err(format!(
            "{field}: `{}` is not a valid Kubernetes name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            value.escape_debug()
        ))
    };
    if value.is_empty() || value.len() > 253 {
        return fail();
    }
    for part in value.split('.') {
        if check_label(field, part).is_err() {
            return fail();
        }
    }
    Ok(())
}

/// `text` if it fits in a label (`max` characters), else its first characters, a `-` and a
/// hash of the whole, so that two long names never share a label. Fluid shortens long
/// namespaced names the same way (a prefix plus a hash).
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let hash = format!("{:016x}", fnv64(text.as_bytes()));
    let keep = max.saturating_sub(hash.len() + 1);
    let head: String = text.chars().take(keep).collect();
    format!("{}-{hash}", head.trim_end_matches(['-', '.']))
}

/// The label of the nodes that hold a Dataset's cache: `fluid.io/s-<ns>-<name>`, shortened
/// when the name part would pass 63 characters.
pub fn locality_label(ns: &str, name: &str) -> String {
    format!("fluid.io/{}", shorten(&format!("s-{ns}-{name}"), LABEL_MAX))
}

/// A label value made from names (`<ns>-<name>`), shortened to 63 characters.
pub fn label_value(text: &str) -> String {
    shorten(text, LABEL_MAX)
}

/// FNV-1a: stable across releases, which labels on live objects need. Not a security
/// boundary: names are the user's own.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_their_root_or_break_labels_are_refused() {
        for bad in ["", "../x", "a/b", "A", "-a", "a-", "a\0b", "a..b", ".a", &"a".repeat(254)] {
            assert!(check_subdomain("metadata.name", bad).is_err(), "{bad:?}");
        }
        let longest = [&"a".repeat(63), &"b".repeat(63), &"c".repeat(63), &"d".repeat(61)].map(|s| s.as_str()).join(".");
        assert_eq!(longest.len(), 253);
        for good in ["demo", "my-data.v2", "a", &longest] {
            assert!(check_subdomain("metadata.name", good).is_ok(), "{good:?}");
        }
        assert!(check_label("metadata.namespace", &"n".repeat(64)).is_err());
        assert!(check_label("metadata.namespace", "a.b").is_err());
        assert!(check_label("metadata.namespace", "kube-system").is_ok());
    }

    #[test]
    fn long_labels_are_shortened_with_a_hash_and_short_ones_kept() {
        assert_eq!(locality_label("default", "demo"), "fluid.io/s-default-demo");
        let long = "x".repeat(70);
        let a = locality_label("default", &long);
        let b = locality_label("default", &format!("{long}y"));
        assert_ne!(a, b);
        let name_part = a.strip_prefix("fluid.io/").unwrap();
        assert!(name_part.len() <= LABEL_MAX && name_part.starts_with("s-default-x"), "{a}");
        assert!(label_value(&"a".repeat(100)).len() <= LABEL_MAX);
    }
}
