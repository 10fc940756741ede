//! Property test of the YAML loader against hostile input: arbitrary text, and the seeds'
//! own files cut short, with bytes flipped, lines dropped or repeated. Whatever comes in, the
//! loader and the planner answer with a value or one error line; they never panic or hang.
//!
//! Cases: `PROPTEST_CASES` (CI: the default 256 per property). Failing cases are kept in
//! `<test>.proptest-regressions` beside the test and replayed first.

use cistern_api::Manifest;
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/examples");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
        .unwrap_or_default();
    out.push(include_str!("../../../examples/demo.yaml").to_string());
    out
}

fn load(text: &str) {
    let mut m = Manifest::default();
    if m.add_yaml(text, "fuzz.yaml").is_ok() {
        if let Err(e) = m.plan(None) {
            assert!(!e.is_empty() && !e.contains('\n') || e.lines().count() < 20, "a run-on error: {e}");
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        load(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[-a-zA-Z0-9:{}\\[\\], \n./'\"&*!|>#]{0,400}") {
        load(&text);
    }

    #[test]
    fn damaged_seeds_never_panic(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        drop_line in any::<prop::sample::Index>(),
        repeat in any::<bool>(),
    ) {
        let all = seeds();
        let seed = all[which.index(all.len())].clone();
        let mut bytes = seed.into_bytes();
        for (at, b) in flips {
            let i = at.index(bytes.len().max(1));
            if i < bytes.len() {
                bytes[i] = b;
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut lines: Vec<&str> = text.lines().collect();
        if !lines.is_empty() {
            let i = drop_line.index(lines.len());
            if repeat { lines.insert(i, lines[i]); } else { lines.remove(i); }
        }
        let text = lines.join("\n");
        let end = cut.index(text.len() + 1);
        let end = (0..=end).rev().find(|e| text.is_char_boundary(*e)).unwrap_or(0);
        load(&text[..end]);
    }
}
