//! The plugin's memory allocator: free lists by size class in front of the system one.
//!
//! A transform allocates and frees the same few sizes for every record (an output's
//! payload, its key, a parsed field that needed unescaping), and inside the sandbox every
//! call into `malloc` and `free` is dear: `dlmalloc` behind two layers of shims, each
//! function entry an epoch check. Blocks of up to 2 KiB are taken from and given back to
//! a free list per power-of-two size: a few instructions, no search, no coalescing.
//! Larger blocks go to the system allocator. Small blocks are never handed back to it:
//! a plugin keeps, per size class, the most it ever used at once (the sandbox's memory cap
//! still bounds it). Plugins that want another allocator turn off the SDK's default
//! feature `allocator`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes 16, 32, ..., 2048 bytes.
const CLASSES: usize = 8;
const SMALLEST: usize = 16;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Bytes taken from the system allocator at a time to cut into blocks of one class.
const REFILL_BYTES: usize = 8192;

/// The allocator; see the module's documentation.
pub struct SizeClasses {
    /// The head of each class's free list: a free block's first word points at the next.
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// A wasm32 target without atomics (wasm32-wasip2) runs a component's code on one
// thread: the free lists are never shared. (Not `Sync` anywhere else.)
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    /// An allocator with empty free lists.
    pub const fn new() -> Self {
        Self {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of `layout`, or `None` for the system allocator. A block of a class
/// is aligned to its size, so the class also covers the alignment.
#[inline]
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(SMALLEST);
    if size > LARGEST {
        return None;
    }
    Some((size.next_power_of_two().trailing_zeros() - SMALLEST.trailing_zeros()) as usize)
}

impl SizeClasses {
    /// Cuts a fresh chunk into blocks of `class`, returns one and lists the others.
    #[cold]
    unsafe fn refill(&self, class: usize) -> *mut u8 {
        let block = SMALLEST << class;
        let bytes = REFILL_BYTES.max(block * 4);
        let Ok(layout) = Layout::from_size_align(bytes, block) else {
            return ptr::null_mut();
        };
        // SAFETY: `layout` has a non-zero size.
        let chunk = unsafe { System.alloc(layout) };
        if chunk.is_null() {
            return chunk;
        }
        // SAFETY: single-threaded (see `Sync`); blocks 1.. of the chunk go on the list.
        unsafe {
            let head = &mut (*self.free.get())[class];
            for i in (1..bytes / block).rev() {
                let b = chunk.add(i * block);
                b.cast::<*mut u8>().write(*head);
                *head = b;
            }
        }
        chunk
    }
}

unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `Sync`); a listed block is free and its first
        // word holds the next one.
        unsafe {
            let head = &mut (*self.free.get())[class];
            let block = *head;
            if block.is_null() {
                return self.refill(class);
            }
            *head = block.cast::<*mut u8>().read();
            block
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: `block` came from `alloc` with this layout, so from this class, and
            // the caller no longer uses it.
            Some(class) => unsafe {
                let head = &mut (*self.free.get())[class];
                block.cast::<*mut u8>().write(*head);
                *head = block;
            },
            // SAFETY: the caller's contract, passed on.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            // SAFETY: the caller's contract; fresh pages need no zeroing by us.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's contract; the block has at least `layout.size()` bytes.
        unsafe {
            let block = self.alloc(layout);
            if !block.is_null() {
                ptr::write_bytes(block, 0, layout.size());
            }
            block
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (class(layout), class(new_layout)) {
            // Still fits its block.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: the caller's contract, passed on.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // SAFETY: a new block, the old contents copied, the old block freed.
            _ => unsafe {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    #[test]
    fn sizes_map_to_the_smallest_class_that_holds_them() {
        assert_eq!(class(layout(1, 1)), Some(0));
        assert_eq!(class(layout(16, 8)), Some(0));
        assert_eq!(class(layout(17, 1)), Some(1));
        assert_eq!(class(layout(256, 1)), Some(4));
        assert_eq!(
            class(layout(8, 64)),
            Some(2),
            "the alignment counts as size"
        );
        assert_eq!(class(layout(LARGEST, 1)), Some(CLASSES - 1));
        assert_eq!(class(layout(LARGEST + 1, 1)), None);
    }

    #[test]
    fn blocks_are_aligned_distinct_and_reused() {
        let a = SizeClasses::new();
        unsafe {
            for (size, align) in [(1, 1), (24, 8), (100, 4), (64, 64), (2000, 16), (5000, 8)] {
                let l = layout(size, align);
                let blocks: Vec<*mut u8> = (0..600).map(|_| a.alloc(l)).collect();
                for (i, &b) in blocks.iter().enumerate() {
                    assert!(!b.is_null());
                    assert_eq!(b as usize % align, 0, "{size}/{align} misaligned");
                    ptr::write_bytes(b, i as u8, size);
                }
                // No two live blocks overlap: each still holds what was written to it.
                for (i, &b) in blocks.iter().enumerate() {
                    let bytes = std::slice::from_raw_parts(b, size);
                    assert!(
                        bytes.iter().all(|&x| x == i as u8),
                        "{size}: block {i} overwritten"
                    );
                }
                let last = *blocks.last().expect("blocks");
                for &b in &blocks {
                    a.dealloc(b, l);
                }
                if class(l).is_some() {
                    assert_eq!(
                        a.alloc(l),
                        last,
                        "the last block freed is the next one taken"
                    );
                    a.dealloc(last, l);
                }
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_the_system() {
        let a = SizeClasses::new();
        unsafe {
            let mut block = a.alloc(layout(10, 1));
            ptr::copy_nonoverlapping(b"0123456789".as_ptr(), block, 10);
            let mut size = 10;
            for new_size in [12, 16, 17, 300, 2048, 4096, 100_000, 40, 5] {
                block = a.realloc(block, layout(size, 1), new_size);
                assert!(!block.is_null());
                let kept = std::slice::from_raw_parts(block, size.min(new_size).min(10));
                assert_eq!(
                    kept,
                    &b"0123456789"[..kept.len()],
                    "at {size} -> {new_size}"
                );
                size = new_size;
            }
            a.dealloc(block, layout(size, 1));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let a = SizeClasses::new();
        unsafe {
            let l = layout(200, 8);
            let b = a.alloc(l);
            ptr::write_bytes(b, 0xAB, 200);
            a.dealloc(b, l);
            let z = a.alloc_zeroed(l);
            assert_eq!(z, b);
            assert!(std::slice::from_raw_parts(z, 200).iter().all(|&x| x == 0));
            a.dealloc(z, l);
        }
    }
}
