//! The crate's bit-set newtype macro, shared by the classifier's flags and the session's pin
//! reasons.

/// Defines a `Copy` bit-set newtype with named constants and the usual operators.
///
/// Written by hand instead of pulling in the `bitflags` crate: the users need only `contains`,
/// `intersects`, `insert`, `remove`, `|` and a readable `Debug`.
macro_rules! bitset {
    ($(#[$meta:meta])* $name:ident: $int:ty { $($(#[$cmeta:meta])* $flag:ident = $bit:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name($int);

        impl $name {
            $($(#[$cmeta])* pub const $flag: Self = Self(1 << $bit);)*
            /// No bit set.
            pub const EMPTY: Self = Self(0);
            const FLAG_NAMES: &'static [(&'static str, Self)] = &[$((stringify!($flag), Self::$flag),)*];

            /// The raw bits, for logging or metrics.
            pub const fn bits(self) -> $int {
                self.0
            }
            /// True when every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// True when at least one bit of `other` is set in `self`.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
            /// Both sets of bits (a `const` form of `|`).
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
            /// True when no bit is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// Sets every bit of `other`.
            pub fn insert(&mut self, other: Self) {
                self.0 |= other.0;
            }
            /// Clears every bit of `other`.
            pub fn remove(&mut self, other: Self) {
                self.0 &= !other.0;
            }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                Self(self.0 | rhs.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                self.0 |= rhs.0;
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut set = f.debug_set();
                for (name, bit) in Self::FLAG_NAMES {
                    if self.contains(*bit) {
                        set.entry(&format_args!("{name}"));
                    }
                }
                set.finish()
            }
        }
    };
}
