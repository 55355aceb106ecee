//! Filter rules (exclude/include/filter, merge files): parsing, wire form and matching.
