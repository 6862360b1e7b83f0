//! The netrpc fixture plugin's types and service, the Rust twin of
//! `go-fixtures/internal/fixture/netrpc.go`: the same Go type and field names, the same methods
//! (`Plugin.Double`, `Echo`, `Fail`, `Put`, `Get`, `PrintStdio`, `Flood`, `Log`, `Panic`,
//! `Callback`, `Serve`), and the same texts for hosts to report.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use gobwire::{Dynamic, Gob, Interface, Value};
use plugwire_plugin::netrpc::{MuxBroker, Server, ServiceError};

/// Go's `*plugin.BasicError`, go-plugin's gob-friendly error.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct BasicError {
    /// `Message`.
    pub message: String,
}

/// The name `gob.Register(&plugin.BasicError{})` gives it.
pub const BASIC_ERROR: &str = "*plugin.BasicError";

/// `fixture.Inner`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct Inner {
    /// `Name`.
    pub name: String,
    /// `Tags`.
    pub tags: Vec<String>,
}

/// `fixture.Values`: every kind of gob value the matrix checks, both ways in `Plugin.Echo`.
#[derive(Gob, Debug, Default, Clone, PartialEq)]
pub struct Values {
    /// `Int` (Go `int`).
    pub int: i64,
    /// `Uint` (Go `uint32`).
    pub uint: u32,
    /// `Float`.
    pub float: f64,
    /// `Bool`.
    pub bool: bool,
    /// `Text`.
    pub text: String,
    /// `Bytes`.
    pub bytes: Vec<u8>,
    /// `Strings`.
    pub strings: Vec<String>,
    /// `Counts` (Go `map[string]int`).
    pub counts: BTreeMap<String, i64>,
    /// `Nested` (Go `*Inner`).
    pub nested: Option<Box<Inner>>,
    /// `Any` (Go `interface{}`).
    pub any: Option<Interface>,
    /// `Err` (Go `error`, holding a `*plugin.BasicError`).
    pub err: Option<Interface>,
}

/// `fixture.StdioArgs`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct StdioArgs {
    /// `Stdout`.
    pub stdout: Vec<u8>,
    /// `Stderr`.
    pub stderr: Vec<u8>,
}

/// What hosts send to `Plugin.Echo` (`fixture.NetRPCValues`).
pub fn values() -> Values {
    Values {
        int: -7,
        uint: 7,
        float: 2.5,
        bool: true,
        text: "héllo".into(),
        bytes: vec![0, 1, 2, 255],
        strings: vec!["a".into(), "b".into()],
        counts: [("x".to_owned(), 1), ("y".to_owned(), 2)].into(),
        nested: Some(Box::new(Inner {
            name: "inner".into(),
            tags: vec!["t1".into(), "t2".into()],
        })),
        any: Some(Interface::string("any value")),
        err: Interface::new(
            BASIC_ERROR,
            &BasicError {
                message: "inner error".into(),
            },
        )
        .ok(),
    }
}

/// The text both fixture hosts print for `Values` (`fixture.DescribeValues`, Go's `%v`).
pub fn describe(v: &Values) -> String {
    let list = |items: &[String]| format!("[{}]", items.join(" "));
    let nested = v.nested.as_ref().map_or_else(
        || "<nil>".to_owned(),
        |n| format!("{}{}", n.name, list(&n.tags)),
    );
    let any = match v.any.as_ref().map(|i| &i.value) {
        None => "<nil>".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
    };
    let err = match &v.err {
        None => "<nil>".to_owned(),
        Some(i) => i
            .downcast::<BasicError>()
            .map_or_else(|e| format!("<{e}>"), |b| b.message),
    };
    let bytes: Vec<String> = v.bytes.iter().map(u8::to_string).collect();
    let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    format!(
        "int={} uint={} float={} bool={} text={} bytes=[{}] strings={} counts=map[{}] nested={nested} any={any} err={err}",
        v.int,
        v.uint,
        v.float,
        v.bool,
        v.text,
        bytes.join(" "),
        list(&v.strings),
        counts.join(" "),
    )
}

/// The fixture plugin's `Plugin` service for one dispense (`fixture.NetRPCServer`).
pub fn server(broker: &MuxBroker) -> Server {
    let values: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let mut s = Server::new();
    s.register("Plugin.Double", |n: i64| async move {
        Ok::<_, ServiceError>(2 * n)
    });
    s.register("Plugin.Echo", |v: Values| async move {
        Ok::<_, ServiceError>(v)
    });
    s.register("Plugin.Fail", |msg: String| async move {
        Err::<Empty, _>(ServiceError(msg))
    });
    let stored = values.clone();
    s.register("Plugin.Put", move |args: Dynamic| {
        let stored = stored.clone();
        async move {
            let (key, value) = put_args(&args).map_err(ServiceError)?;
            stored
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, value);
            Ok::<_, ServiceError>(None::<Interface>)
        }
    });
    s.register("Plugin.Get", move |key: String| {
        let values = values.clone();
        async move {
            values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned()
                .ok_or_else(|| ServiceError(format!("no value for key {key:?}")))
        }
    });
    s.register("Plugin.PrintStdio", |args: StdioArgs| async move {
        let mut out = std::io::stdout();
        out.write_all(&args.stdout)?;
        out.flush()?;
        std::io::stderr().write_all(&args.stderr)?;
        Ok::<_, ServiceError>(Empty {})
    });
    s.register("Plugin.Flood", |sizes: String| async move {
        let (out, err) = sizes
            .split_once(',')
            .and_then(|(o, e)| Some((o.parse::<u64>().ok()?, e.parse::<u64>().ok()?)))
            .ok_or_else(|| {
                ServiceError(format!("flood wants \"<stdout>,<stderr>\", got {sizes:?}"))
            })?;
        std::thread::spawn(move || {
            let stderr =
                std::thread::spawn(move || crate::write_flood(&mut std::io::stderr(), err));
            let _ = crate::write_flood(&mut std::io::stdout(), out);
            let _ = stderr.join();
        });
        Ok::<_, ServiceError>(Empty {})
    });
    s.register("Plugin.Log", |key: String| async move {
        tracing::info!(key = %key, "PrintKV called");
        Ok::<_, ServiceError>(Empty {})
    });
    s.register("Plugin.Panic", |msg: String| async move {
        if !msg.is_empty() {
            panic!("{msg}");
        }
        Ok::<_, ServiceError>(Empty {})
    });
    let b = broker.clone();
    s.register("Plugin.Callback", move |id: u32| {
        let broker = b.clone();
        async move {
            let client = broker
                .dial_client(id)
                .await
                .map_err(|e| ServiceError(format!("dial {id}: {e}")))?;
            let answer: String = client.call("Plugin.Ping", &None::<Interface>).await?;
            let _ = client.close().await;
            Ok::<_, ServiceError>(answer)
        }
    });
    let b = broker.clone();
    s.register("Plugin.Serve", move |_: Option<Interface>| {
        let broker = b.clone();
        async move {
            let id = broker.next_id();
            tokio::spawn(async move {
                let _ = broker.accept_and_serve(id, Arc::new(pong())).await;
            });
            Ok::<_, ServiceError>(id)
        }
    });
    s
}

/// The `Pong` brokered connections serve: `Plugin.Ping` answers `"pong"`.
pub fn pong() -> Server {
    let mut s = Server::new();
    s.register("Plugin.Ping", |_: Option<Interface>| async {
        Ok::<_, ServiceError>("pong".to_owned())
    });
    s
}

/// Go's `struct{}`.
#[derive(Gob, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Empty {}

/// `args["key"]` (a string) and `args["value"]` (`[]byte`) of `Plugin.Put`'s
/// `map[string]interface{}`, or the error a Go plugin answers.
fn put_args(args: &Dynamic) -> Result<(String, Vec<u8>), String> {
    let Value::Map(entries) = &args.value else {
        return Err("put: the argument is not a map".into());
    };
    let get = |name: &str| {
        entries.iter().find_map(|(k, v)| match (k, v) {
            (Value::String(k), Value::Interface(Some(i))) if k == name => Some(&i.value),
            _ => None,
        })
    };
    let Some(Value::String(key)) = get("key") else {
        return Err("put: key is not a string".into());
    };
    let Some(Value::Bytes(value)) = get("value") else {
        return Err("put: value is not []byte".into());
    };
    Ok((key.clone(), value.clone()))
}
