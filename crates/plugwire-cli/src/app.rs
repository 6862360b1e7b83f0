//! What every subcommand shares: the log capture and the output styles.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::capture::{LogLayer, Logs};
use crate::style::{ColorChoice, Style};

/// The process-wide context of a subcommand.
#[derive(Debug)]
pub(crate) struct App {
    /// The plugin's log lines and the host's warnings, as they come.
    pub(crate) logs: Logs,
    /// The style of stdout.
    pub(crate) style: Style,
    /// The style of stderr.
    pub(crate) err_style: Style,
}

impl App {
    /// Sets up the styles and installs the log capture as the global `tracing` subscriber.
    pub(crate) fn init(color: ColorChoice, verbose: bool) -> Self {
        let logs = Logs::default();
        let err_style = Style::stderr(color);
        let _ = tracing_subscriber::registry()
            .with(LogLayer::new(logs.clone(), verbose.then_some(err_style)))
            .try_init();
        App {
            logs,
            style: Style::stdout(color),
            err_style,
        }
    }
}
