//! The Modal backend against the strict fake Modal server (`errand_modal::fake`),
//! whose "sandboxes" are local processes in bubblewrap.

mod backend;
