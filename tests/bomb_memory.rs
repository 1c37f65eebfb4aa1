//! Peak heap use while rejecting alias bombs, measured with a counting global
//! allocator. Kept in its own test binary so no other test allocates at the
//! same time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use agentplane::task::yaml::{Budget, YamlError, parse_document};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn alias_bomb(width: usize, levels: usize) -> String {
    let scalars: Vec<String> = (0..width).map(|i| format!("v{i}")).collect();
    let mut text = format!("a: &a [{}]\n", scalars.join(","));
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for level in 1..=levels {
        let (prev, name) = (names[level - 1], names[level]);
        let refs = vec![format!("*{prev}"); 10].join(",");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    text
}

/// Peak bytes allocated during the parse, above what was live before it.
fn peak_during_parse(text: &str) -> (Result<serde_json::Value, YamlError>, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = parse_document(text, &Budget::default());
    (result, PEAK.load(Ordering::Relaxed) - base)
}

#[test]
fn alias_bombs_are_rejected_in_little_memory() {
    const LIMIT: usize = 50 * 1024 * 1024;
    for (width, levels) in [(1_000, 6), (3_500, 7)] {
        let text = alias_bomb(width, levels);
        let (result, peak) = peak_during_parse(&text);
        println!(
            "alias bomb ({} bytes): peak {:.1} MB",
            text.len(),
            peak as f64 / 1e6
        );
        assert!(matches!(result, Err(YamlError::TooComplex { .. })), "{result:?}");
        assert!(peak < LIMIT, "peak {peak} bytes");
    }
}
