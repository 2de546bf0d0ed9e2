//! Statement classification (being written).
