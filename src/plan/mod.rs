//! Schedule simulation and its renderings.
