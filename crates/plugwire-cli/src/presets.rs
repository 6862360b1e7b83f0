//! The handshakes of well-known go-plugin ecosystems (`--preset`).
//!
//! Every value was read from the host's and the plugin SDK's own source; `source` says where, so
//! a reader can check it. A preset never guesses: an ecosystem whose handshake could not be
//! read from its source is not here.

/// One ecosystem's handshake, as its host launches plugins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Preset {
    /// The name given to `--preset`.
    pub(crate) name: &'static str,
    /// What kind of plugins use it.
    pub(crate) description: &'static str,
    /// The magic cookie variable.
    pub(crate) cookie_key: &'static str,
    /// Its value.
    pub(crate) cookie_value: &'static str,
    /// The app-protocol versions the host offers.
    pub(crate) versions: &'static [u32],
    /// Whether the host turns AutoMTLS on.
    pub(crate) auto_mtls: bool,
    /// Other variables the host sets that the plugin SDK reads.
    pub(crate) env: &'static [(&'static str, &'static str)],
    /// Executable name prefixes that suggest this ecosystem, longest match wins.
    pub(crate) name_prefixes: &'static [&'static str],
    /// Where each value was read.
    pub(crate) source: &'static str,
}

/// The presets, in the order `plugwire presets` lists them.
pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        name: "terraform",
        description: "Terraform providers (plugin protocol 5 and 6)",
        cookie_key: "TF_PLUGIN_MAGIC_COOKIE",
        cookie_value: "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
        versions: &[5, 6],
        auto_mtls: true,
        env: &[],
        name_prefixes: &["terraform-provider-"],
        // Cookie: internal/plugin/serve.go `Handshake`; versions: internal/plugin/plugin.go
        // `VersionedPlugins` (5 and 6); AutoMTLS: internal/command/meta_providers.go
        // (`AutoMTLS: enableProviderAutoMTLS`, on unless TF_DISABLE_PLUGIN_TLS is set).
        source: "github.com/hashicorp/terraform: internal/plugin/serve.go, internal/plugin/plugin.go, \
                 internal/command/meta_providers.go",
    },
    Preset {
        name: "vault",
        description: "Vault secrets and auth plugins (backend protocol 3, 4, 5)",
        cookie_key: "VAULT_BACKEND_PLUGIN",
        cookie_value: "6669da05-b1c8-4f49-97d9-c8e5bed98e20",
        versions: &[3, 4, 5],
        auto_mtls: true,
        // The SDK's TLS provider steps aside for go-plugin's AutoMTLS when this is "true"
        // (api/plugin_helpers.go `VaultPluginTLSProviderContext`); Vault sets it
        // (sdk/helper/pluginutil/run_config.go).
        env: &[("VAULT_PLUGIN_AUTOMTLS_ENABLED", "true")],
        name_prefixes: &["vault-plugin-"],
        // Cookie and versions: sdk/plugin/serve.go (`HandshakeConfig`; `Serve` offers 3 and 4,
        // `ServeMultiplex` 3, 4, 5); AutoMTLS: sdk/helper/pluginutil/run_config.go.
        source: "github.com/hashicorp/vault: sdk/plugin/serve.go, sdk/helper/pluginutil/run_config.go, \
                 api/plugin_helpers.go",
    },
    Preset {
        name: "vault-database",
        description: "Vault database plugins (dbplugin v5, multiplexed v6)",
        cookie_key: "VAULT_DATABASE_PLUGIN",
        cookie_value: "926a0820-aea2-be28-51d6-83cdf00e8edb",
        versions: &[5, 6],
        auto_mtls: true,
        env: &[("VAULT_PLUGIN_AUTOMTLS_ENABLED", "true")],
        name_prefixes: &["vault-plugin-database-"],
        // Cookie: sdk/database/dbplugin/v5/grpc_database_plugin.go; versions:
        // plugin_server.go (`ServeConfigMultiplex`: 5 and 6); AutoMTLS: plugin_client.go
        // (`pluginutil.AutoMTLS(true)`).
        source: "github.com/hashicorp/vault: sdk/database/dbplugin/v5/{grpc_database_plugin,plugin_server,plugin_client}.go",
    },
    Preset {
        name: "kms",
        description: "go-kms-wrapping KMS plugins (Vault, Boundary seals)",
        cookie_key: "HASHICORP_GKW_PLUGIN",
        cookie_value: "wrapper",
        versions: &[1],
        auto_mtls: true,
        env: &[],
        name_prefixes: &[],
        // `HandshakeConfig`, `ServePlugin` (version 1) and `NewWrapperClient` (AutoMTLS: true).
        source: "github.com/hashicorp/go-kms-wrapping: plugin/plugin.go",
    },
    Preset {
        name: "boundary",
        description: "Boundary host and storage plugins",
        cookie_key: "HASHICORP_BOUNDARY_PLUGIN",
        cookie_value: "boundary-plugin",
        versions: &[1],
        auto_mtls: true,
        env: &[],
        name_prefixes: &["boundary-plugin-"],
        // `HandshakeConfig`, `ServePlugin` (version 1) and `NewPluginClient` (AutoMTLS: true).
        source: "github.com/hashicorp/boundary: sdk/plugins/plugin.go",
    },
    Preset {
        name: "tflint",
        description: "TFLint rulesets (plugin SDK protocol 11)",
        cookie_key: "TFLINT_RULESET_PLUGIN",
        cookie_value: "5adSn1bX8nrDfgBqiAqqEkC6OE1h3iD8SqbMc5UUONx8x3xCF0KlPDsBRNDjoYDP",
        versions: &[11],
        auto_mtls: false,
        env: &[],
        name_prefixes: &["tflint-ruleset-"],
        // `handshakeConfig` (ProtocolVersion 11) and `NewClient` (gRPC, no AutoMTLS).
        source: "github.com/terraform-linters/tflint-plugin-sdk: plugin/host2plugin/plugin.go, \
                 plugin/host2plugin/client.go",
    },
    Preset {
        name: "nomad",
        description: "Nomad task driver and device plugins",
        cookie_key: "NOMAD_PLUGIN_MAGIC_COOKIE",
        cookie_value: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
        versions: &[2],
        auto_mtls: false,
        env: &[],
        name_prefixes: &["nomad-driver-", "nomad-device-"],
        // `Handshake` (ProtocolVersion 2) and the loader's `ClientConfig` (gRPC, no AutoMTLS).
        source: "github.com/hashicorp/nomad: plugins/base/plugin.go, helper/pluginutils/loader/loader.go",
    },
    Preset {
        name: "go-plugin-examples",
        description: "go-plugin's own examples (grpc, bidirectional, streaming, basic)",
        cookie_key: "BASIC_PLUGIN",
        cookie_value: "hello",
        versions: &[1],
        auto_mtls: false,
        env: &[],
        name_prefixes: &[],
        source: "github.com/hashicorp/go-plugin v1.8.0: examples/grpc/shared/interface.go",
    },
    Preset {
        name: "go-plugin-test",
        description: "go-plugin's test suite handshake (TEST_MAGIC_COOKIE=test)",
        cookie_key: "TEST_MAGIC_COOKIE",
        cookie_value: "test",
        versions: &[1],
        auto_mtls: false,
        env: &[],
        name_prefixes: &[],
        source: "github.com/hashicorp/go-plugin v1.8.0: plugin_test.go `testHandshake`",
    },
];

/// Ecosystems whose plugins share go-plugin's cookie idea but not its protocol: `inspect` says
/// so instead of suggesting a cookie that cannot help.
pub(crate) const NOT_GO_PLUGIN: &[(&str, &str)] = &[(
    "packer-plugin-",
    "Packer plugins do not speak go-plugin: packer-plugin-sdk has a protocol of its own \
     (github.com/hashicorp/packer-plugin-sdk: plugin/server.go)",
)];

/// The preset of that name.
pub(crate) fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The preset an executable's file name suggests (the longest matching prefix).
pub(crate) fn by_file_name(file_name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .flat_map(|p| p.name_prefixes.iter().map(move |prefix| (prefix, p)))
        .filter(|(prefix, _)| file_name.starts_with(**prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, p)| p)
}

/// What a file name says about a non-go-plugin ecosystem, if anything.
pub(crate) fn not_go_plugin(file_name: &str) -> Option<&'static str> {
    NOT_GO_PLUGIN
        .iter()
        .find(|(prefix, _)| file_name.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// The names, for error messages.
pub(crate) fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_pick_the_longest_prefix() {
        assert_eq!(
            by_file_name("terraform-provider-aws_v5.0.0_x5").map(|p| p.name),
            Some("terraform")
        );
        assert_eq!(
            by_file_name("vault-plugin-database-snowflake").map(|p| p.name),
            Some("vault-database")
        );
        assert_eq!(
            by_file_name("vault-plugin-secrets-kv").map(|p| p.name),
            Some("vault")
        );
        assert_eq!(by_file_name("kv-plugin"), None);
        assert!(not_go_plugin("packer-plugin-amazon").is_some());
    }

    #[test]
    fn names_are_unique_and_found_case_insensitively() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        assert_eq!(find("Terraform").map(|p| p.versions), Some(&[5, 6][..]));
        assert!(
            PRESETS
                .iter()
                .all(|p| !p.versions.is_empty() && !p.source.is_empty())
        );
    }
}
