//! From `tracing` events in the Rust core to a JS logger.
//!
//! Every manager's work runs inside a span carrying its id
//! (`mongo_locks{manager=…}`). One process-wide layer looks for that id on
//! each event and, if that manager was given a `logger`, hands the event to
//! it on the JS thread as `logger[level](fields, message)` (pino's
//! argument order). Managers without a logger are silent.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, RwLock};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::ValueType;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::js::values::describe;

/// A field value as the JS logger gets it: numbers and booleans stay typed.
type Value = Either3<String, f64, bool>;
/// One log line on its way to JS: (level, message, fields).
type Line = (String, String, HashMap<String, Value>);
type Tsfn = ThreadsafeFunction<Line, Unknown<'static>, FnArgs<Line>, Status, false, true>;

/// A JS logger as Rust holds it: the call into JS, and which levels the
/// logger has a method for. An event of a level it lacks is dropped here,
/// on the thread that raised it: the default console logger has only
/// `warn` and `error`, and sending it every debug event would wake the JS
/// thread twice per lock+free for nothing.
pub struct Sink {
  tsfn: Tsfn,
  /// debug, info, warn, error
  levels: [bool; 4],
}

const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

static SINKS: RwLock<Option<HashMap<u64, Arc<Sink>>>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

/// A manager's identity for log routing; unregisters its logger on drop.
pub struct LogRoute {
  pub id: u64,
  /// Made once: a span per call cost an allocation in the subscriber's
  /// registry and its `ManagerId` extension on every operation.
  span: tracing::Span,
}

impl LogRoute {
  /// A new id, with `logger` (when given) receiving its events.
  pub fn new(logger: Option<Arc<Sink>>) -> LogRoute {
    INSTALL.call_once(|| {
      // If the host already installed a global subscriber, ours is not used
      // and JS loggers stay silent: never fight the application over it.
      let _ = tracing_subscriber::registry().with(JsLayer).try_init();
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if let Some(sink) = logger {
      SINKS.write().unwrap().get_or_insert_with(HashMap::new).insert(id, sink);
    }
    // Outside any caller's span, as the per-call spans were (they were made
    // at the start of a task, where no span is current).
    let span = tracing::info_span!(parent: None, "mongo_locks", manager = id);
    LogRoute { id, span }
  }

  /// The span every operation of this manager runs in (the same one each time).
  pub fn span(&self) -> tracing::Span {
    self.span.clone()
  }
}

impl Drop for LogRoute {
  fn drop(&mut self) {
    if let Some(map) = SINKS.write().unwrap().as_mut() {
      map.remove(&self.id);
    }
  }
}

/// Wraps a pino-style logger object (any of `debug`, `info`, `warn`,
/// `error`) so Rust can call it from any thread. The wrapper is weak: it
/// never keeps Node running.
pub fn sink_from_js(env: &Env, logger: &Unknown) -> crate::errors::LockResult<Arc<Sink>> {
  let bad = |why: &str| {
    crate::errors::LockError::invalid(format!(
      "mongo-locks-native: options.logger must be an object with debug/info/warn/error methods (pino, console, server.logger), {why}, got {}",
      describe(logger)
    ))
  };
  if !matches!(logger.get_type(), Ok(ValueType::Object)) {
    return Err(bad("not an object"));
  }
  let obj: Object = unsafe { logger.cast() }.map_err(|_| bad("unreadable"))?;
  let levels = LEVELS.map(|m| {
    obj
      .get_named_property::<Unknown>(m)
      .map(|f| f.get_type().ok() == Some(ValueType::Function))
      .unwrap_or(false)
  });
  if !levels.contains(&true) {
    return Err(bad("it has none of them"));
  }
  (|| -> Result<Arc<Sink>> {
    // dispatch(logger, level, message, fields): no captured state, the
    // logger travels as a bound argument and stays managed by the GC.
    let dispatch = env.create_function_from_closure::<Unknown, Null, _>("mongoLocksLog", |ctx| {
      // Nothing in here may throw: an exception from a threadsafe call
      // would be uncaught. A logger that throws is ignored.
      let _ = (|| -> Result<()> {
        let logger: Object = ctx.get(0)?;
        let level: String = ctx.get(1)?;
        let message: String = ctx.get(2)?;
        let fields: Unknown = ctx.get(3)?;
        let method: Unknown = logger.get_named_property(&level)?;
        if method.get_type()? == ValueType::Function {
          let method: Function<FnArgs<(Unknown, String)>, Unknown> = unsafe { method.cast()? };
          // bind + call, not apply: call takes the exception out of the
          // engine, where apply would leave it pending to resurface as
          // an uncaught exception.
          method.bind(logger)?.call(FnArgs::from((fields, message)))?;
        }
        Ok(())
      })();
      Ok(Null)
    })?;
    let bind: Function<FnArgs<(Null, Unknown)>, Unknown> = {
      let fn_proto: Unknown = dispatch.coerce_to_object()?.get_named_property("bind")?;
      unsafe { fn_proto.cast()? }
    };
    let bound: Unknown = bind.apply(dispatch, FnArgs::from((Null, *logger)))?;
    let bound: Function<FnArgs<Line>, Unknown> = unsafe { bound.cast()? };
    let tsfn = bound
      .build_threadsafe_function::<Line>()
      .weak::<true>()
      .callee_handled::<false>()
      .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))?;
    Ok(Arc::new(Sink { tsfn, levels }))
  })()
  .map_err(|e| bad(&e.reason))
}

/// Marks a span as belonging to a manager.
struct ManagerId(u64);

struct JsLayer;

impl<S> Layer<S> for JsLayer
where
  S: Subscriber + for<'a> LookupSpan<'a>,
{
  fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
    let mut visitor = Fields::default();
    attrs.record(&mut visitor);
    if let Some(manager) = visitor.manager {
      if let Some(span) = ctx.span(id) {
        span.extensions_mut().insert(ManagerId(manager));
      }
    }
  }

  fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
    let sinks = SINKS.read().unwrap();
    let Some(sinks) = sinks.as_ref().filter(|m| !m.is_empty()) else { return };
    let Some(scope) = ctx.event_scope(event) else { return };
    let Some(manager) = scope.from_root().find_map(|span| span.extensions().get::<ManagerId>().map(|m| m.0)) else {
      return;
    };
    let Some(sink) = sinks.get(&manager) else { return };
    let level = match *event.metadata().level() {
      Level::ERROR => 3,
      Level::WARN => 2,
      Level::INFO => 1,
      _ => 0,
    };
    if !sink.levels[level] {
      return;
    }
    let mut visitor = Fields::default();
    event.record(&mut visitor);
    sink.tsfn.call(
      (LEVELS[level].to_string(), visitor.message, visitor.fields),
      ThreadsafeFunctionCallMode::NonBlocking,
    );
  }
}

#[derive(Default)]
struct Fields {
  message: String,
  fields: HashMap<String, Value>,
  manager: Option<u64>,
}

impl Visit for Fields {
  fn record_u64(&mut self, field: &Field, value: u64) {
    if field.name() == "manager" {
      self.manager = Some(value);
    } else {
      self.fields.insert(field.name().to_string(), Either3::B(value as f64));
    }
  }

  fn record_i64(&mut self, field: &Field, value: i64) {
    self.fields.insert(field.name().to_string(), Either3::B(value as f64));
  }

  fn record_f64(&mut self, field: &Field, value: f64) {
    self.fields.insert(field.name().to_string(), Either3::B(value));
  }

  fn record_bool(&mut self, field: &Field, value: bool) {
    self.fields.insert(field.name().to_string(), Either3::C(value));
  }

  fn record_str(&mut self, field: &Field, value: &str) {
    self.record_text(field, value.to_string());
  }

  fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
    self.record_text(field, format!("{value:?}"));
  }
}

impl Fields {
  fn record_text(&mut self, field: &Field, value: String) {
    if field.name() == "message" {
      self.message = value;
    } else {
      self.fields.insert(field.name().to_string(), Either3::A(value));
    }
  }
}
