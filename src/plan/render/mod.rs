//! Renderings of a [`super::Plan`]: a Gantt chart for people, JSON for machines, Mermaid
//! for markdown.

pub mod json;
pub mod mermaid;
pub mod terminal;
