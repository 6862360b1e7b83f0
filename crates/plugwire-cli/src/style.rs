//! Terminal styling: colours on a terminal, plain text when piped or when `NO_COLOR` is set.

use std::fmt;
use std::io::IsTerminal as _;

/// When to colour output (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set to a non-empty value.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Whether to colour what goes to one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Style {
    color: bool,
}

impl Style {
    /// The style for stdout.
    pub(crate) fn stdout(choice: ColorChoice) -> Self {
        Self::decide(choice, std::io::stdout().is_terminal())
    }

    /// The style for stderr.
    pub(crate) fn stderr(choice: ColorChoice) -> Self {
        Self::decide(choice, std::io::stderr().is_terminal())
    }

    fn decide(choice: ColorChoice, terminal: bool) -> Self {
        // https://no-color.org: "when present and not an empty string".
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        };
        Style { color }
    }

    pub(crate) fn bold<T: fmt::Display>(self, value: T) -> Painted<T> {
        self.paint("1", value)
    }

    pub(crate) fn dim<T: fmt::Display>(self, value: T) -> Painted<T> {
        self.paint("2", value)
    }

    pub(crate) fn red<T: fmt::Display>(self, value: T) -> Painted<T> {
        self.paint("1;31", value)
    }

    pub(crate) fn green<T: fmt::Display>(self, value: T) -> Painted<T> {
        self.paint("32", value)
    }

    pub(crate) fn yellow<T: fmt::Display>(self, value: T) -> Painted<T> {
        self.paint("33", value)
    }

    fn paint<T: fmt::Display>(self, code: &'static str, value: T) -> Painted<T> {
        Painted {
            code: self.color.then_some(code),
            value,
        }
    }
}

/// A value printed with an SGR colour code, or plain.
#[derive(Debug)]
pub(crate) struct Painted<T> {
    code: Option<&'static str>,
    value: T,
}

impl<T: fmt::Display> fmt::Display for Painted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            // Padding applies to the text, not to the escape codes around it.
            Some(code) => {
                let text = if f.width().is_some() {
                    format!(
                        "{:<width$}",
                        self.value.to_string(),
                        width = f.width().unwrap_or(0)
                    )
                } else {
                    self.value.to_string()
                };
                write!(f, "\x1b[{code}m{text}\x1b[0m")
            }
            None => {
                if let Some(width) = f.width() {
                    write!(f, "{:<width$}", self.value.to_string())
                } else {
                    write!(f, "{}", self.value)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_has_no_escapes_and_keeps_padding() {
        let style = Style { color: false };
        assert_eq!(format!("{:<6}|", style.bold("ab")), "ab    |");
        let colored = Style { color: true };
        assert_eq!(
            format!("{:<4}|", colored.red("ab")),
            "\x1b[1;31mab  \x1b[0m|"
        );
    }
}
