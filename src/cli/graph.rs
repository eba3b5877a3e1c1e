//! `milepost graph`: the dependency graph for other tools.

use clap::Args;

use super::{exit, print, CliError, Cx, DefinitionArgs};
use crate::graph::{render, PlanGraph};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
}

pub fn run(_cx: &Cx, args: &GraphArgs) -> Result<u8, CliError> {
    let loaded = args.definitions.load_definitions()?;
    let workflow = &loaded.workflow;
    let graph = PlanGraph::new(workflow);
    let text = match args.format {
        GraphFormat::Dot => render::dot(workflow, &graph),
        GraphFormat::Mermaid => render::mermaid(workflow, &graph),
        GraphFormat::Json => render::json(workflow, &graph),
    };
    print(&text)?;
    Ok(exit::SUCCESS)
}
