//! ATen function schemas (`aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor`).
//!
//! Every registry entry is declared with PyTorch's own schema string, so argument names, order,
//! kinds and defaults come from one source. Importers bind positional and keyword arguments
//! through [`Schema::bind`]; the verifier checks arguments against [`Schema::check`].

use std::fmt;

use crate::dim::Dim;
use crate::graph::Arg;
use crate::types::DType;

/// The kind of one schema argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgKind {
    Tensor,
    TensorList,
    OptTensorList,
    Int,
    SymInt,
    /// `int[]` or `int[N]`.
    IntList(Option<usize>),
    SymIntList(Option<usize>),
    Float,
    FloatList,
    Bool,
    BoolList(Option<usize>),
    Str,
    Scalar,
    ScalarType,
    Layout,
    Device,
    MemoryFormat,
    Generator,
}

/// One argument of a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgSpec {
    pub name: String,
    pub kind: ArgKind,
    pub optional: bool,
    pub keyword_only: bool,
    /// The default, already converted to an [`Arg`].
    pub default: Option<Arg>,
    /// `Tensor(a!)`: the op writes into this argument.
    pub mutated: bool,
}

/// What an op returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returns {
    /// A fixed number of tensors (possibly zero).
    Fixed(usize),
    /// `Tensor[]`: the count depends on the arguments.
    List,
}

/// A parsed schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// `aten.add.Tensor`
    pub name: String,
    pub args: Vec<ArgSpec>,
    pub returns: Returns,
}

/// A schema string that does not parse (a registry bug, caught by tests).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad schema `{schema}`: {reason}")]
pub struct SchemaError {
    pub schema: String,
    pub reason: String,
}

/// Why arguments do not fit a schema.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    #[error("{op}: expected {expected} arguments, got {got}")]
    Count { op: String, expected: usize, got: usize },
    #[error("{op}: argument `{name}` (#{index}) should be {expected}, got {got}")]
    Kind { op: String, name: String, index: usize, expected: String, got: String },
    #[error("{op}: unknown keyword argument `{name}`")]
    UnknownKeyword { op: String, name: String },
    #[error("{op}: required argument `{name}` is missing")]
    Missing { op: String, name: String },
    #[error("{op}: argument `{name}` given twice")]
    Duplicate { op: String, name: String },
}

impl Schema {
    /// Parse a PyTorch schema string.
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let err = |reason: &str| SchemaError { schema: text.to_string(), reason: reason.to_string() };
        let open = text.find('(').ok_or_else(|| err("no `(`"))?;
        let arrow = text.rfind(") -> ").ok_or_else(|| err("no `) -> `"))?;
        let qualified = &text[..open];
        let (ns, rest) = qualified.split_once("::").ok_or_else(|| err("no namespace"))?;
        let (base, overload) = rest.split_once('.').unwrap_or((rest, "default"));
        let name = format!("{ns}.{base}.{overload}");
        let mut args = Vec::new();
        let mut keyword_only = false;
        for piece in split_top_level(&text[open + 1..arrow]) {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            if piece == "*" {
                keyword_only = true;
                continue;
            }
            args.push(parse_arg(piece, keyword_only).map_err(|r| err(&r))?);
        }
        let ret = text[arrow + 5..].trim();
        let returns = if ret == "()" {
            Returns::Fixed(0)
        } else if ret.starts_with('(') {
            Returns::Fixed(split_top_level(&ret[1..ret.len() - 1]).len())
        } else if ret.ends_with("[]") {
            Returns::List
        } else {
            Returns::Fixed(1)
        };
        Ok(Schema { name, args, returns })
    }

    /// Index of the argument with this name.
    pub fn arg_index(&self, name: &str) -> Option<usize> {
        self.args.iter().position(|a| a.name == name)
    }

    /// Index of the argument the op mutates in place, if any.
    pub fn mutated_arg(&self) -> Option<usize> {
        self.args.iter().position(|a| a.mutated)
    }

    /// Bind positional and keyword arguments into the full positional list, filling defaults.
    pub fn bind(&self, positional: Vec<Arg>, keywords: Vec<(String, Arg)>) -> Result<Vec<Arg>, ArgError> {
        if positional.len() > self.args.len() {
            return Err(ArgError::Count { op: self.name.clone(), expected: self.args.len(), got: positional.len() });
        }
        let mut slots: Vec<Option<Arg>> = vec![None; self.args.len()];
        for (i, a) in positional.into_iter().enumerate() {
            slots[i] = Some(a);
        }
        for (name, a) in keywords {
            let i = self
                .arg_index(&name)
                .ok_or_else(|| ArgError::UnknownKeyword { op: self.name.clone(), name: name.clone() })?;
            if slots[i].is_some() {
                return Err(ArgError::Duplicate { op: self.name.clone(), name });
            }
            slots[i] = Some(a);
        }
        let mut out = Vec::with_capacity(self.args.len());
        for (spec, slot) in self.args.iter().zip(slots) {
            let arg = match slot {
                Some(a) => spec.normalise(a),
                None => match (&spec.default, spec.optional) {
                    (Some(d), _) => d.clone(),
                    (None, true) => Arg::None,
                    (None, false) => return Err(ArgError::Missing { op: self.name.clone(), name: spec.name.clone() }),
                },
            };
            out.push(arg);
        }
        self.check(&out)?;
        Ok(out)
    }

    /// Check a full positional argument list against the schema.
    pub fn check(&self, args: &[Arg]) -> Result<(), ArgError> {
        if args.len() != self.args.len() {
            return Err(ArgError::Count { op: self.name.clone(), expected: self.args.len(), got: args.len() });
        }
        for (i, (spec, arg)) in self.args.iter().zip(args).enumerate() {
            if !spec.accepts(arg) {
                return Err(ArgError::Kind {
                    op: self.name.clone(),
                    name: spec.name.clone(),
                    index: i,
                    expected: spec.describe(),
                    got: describe_arg(arg),
                });
            }
        }
        Ok(())
    }
}

impl ArgSpec {
    /// Whether an argument value fits this spec.
    pub fn accepts(&self, arg: &Arg) -> bool {
        if matches!(arg, Arg::None) {
            return self.optional;
        }
        match (&self.kind, arg) {
            (ArgKind::Tensor, Arg::Tensor(_)) => true,
            (ArgKind::TensorList, Arg::Tensors(_)) => true,
            (ArgKind::OptTensorList, Arg::OptTensors(_) | Arg::Tensors(_)) => true,
            (ArgKind::Int, Arg::Int(_)) => true,
            (ArgKind::SymInt, Arg::Int(_) | Arg::SymInt(_)) => true,
            // `int[N]` fixes only how a bare int expands; PyTorch passes lists of any length to
            // the kernel, which checks them (conv takes `[s]` for every dim, pooling rejects `[a, b, c]`).
            (ArgKind::IntList(_) | ArgKind::SymIntList(_), Arg::Ints(_)) => true,
            (ArgKind::SymIntList(_), Arg::SymInts(_)) => true,
            (ArgKind::Float, Arg::Float(_) | Arg::Int(_)) => true,
            (ArgKind::FloatList, Arg::Floats(_)) => true,
            (ArgKind::Bool, Arg::Bool(_)) => true,
            (ArgKind::BoolList(_), Arg::Bools(_)) => true,
            (ArgKind::Str, Arg::Str(_)) => true,
            (ArgKind::Scalar, Arg::Int(_) | Arg::Float(_) | Arg::Bool(_) | Arg::SymInt(_)) => true,
            (ArgKind::ScalarType, Arg::DType(_)) => true,
            (ArgKind::Layout, Arg::Layout(_)) => true,
            (ArgKind::Device, Arg::Device(_)) => true,
            (ArgKind::MemoryFormat, Arg::MemoryFormat(_)) => true,
            _ => false,
        }
    }

    /// Coerce an argument given by an importer to the canonical form for this spec:
    /// a single int for `int[N]` is repeated N times (as PyTorch's argument parser does), an int
    /// for a float becomes a float. A one-element list stays as it is: each kernel decides whether
    /// it stands for every dim, as PyTorch's do.
    pub fn normalise(&self, arg: Arg) -> Arg {
        match (&self.kind, arg) {
            (ArgKind::IntList(Some(n)), Arg::Int(v)) => Arg::Ints(vec![v; *n]),
            (ArgKind::SymIntList(Some(n)), Arg::Int(v)) => Arg::Ints(vec![v; *n]),
            (ArgKind::SymIntList(_), Arg::SymInts(v)) => Arg::sym_ints(v),
            (ArgKind::SymInt, Arg::SymInt(d)) => Arg::sym_int(d),
            (ArgKind::IntList(None) | ArgKind::SymIntList(None), Arg::Int(v)) => Arg::Ints(vec![v]),
            (ArgKind::Float, Arg::Int(v)) => Arg::Float(v as f64),
            (ArgKind::OptTensorList, Arg::Tensors(v)) => Arg::OptTensors(v.into_iter().map(Some).collect()),
            (_, a) => a,
        }
    }

    fn describe(&self) -> String {
        let base = match &self.kind {
            ArgKind::Tensor => "Tensor".to_string(),
            ArgKind::TensorList => "Tensor[]".to_string(),
            ArgKind::OptTensorList => "Tensor?[]".to_string(),
            ArgKind::Int => "int".to_string(),
            ArgKind::SymInt => "SymInt".to_string(),
            ArgKind::IntList(n) => format!("int[{}]", n.map(|n| n.to_string()).unwrap_or_default()),
            ArgKind::SymIntList(n) => format!("SymInt[{}]", n.map(|n| n.to_string()).unwrap_or_default()),
            ArgKind::Float => "float".to_string(),
            ArgKind::FloatList => "float[]".to_string(),
            ArgKind::Bool => "bool".to_string(),
            ArgKind::BoolList(_) => "bool[]".to_string(),
            ArgKind::Str => "str".to_string(),
            ArgKind::Scalar => "Scalar".to_string(),
            ArgKind::ScalarType => "ScalarType".to_string(),
            ArgKind::Layout => "Layout".to_string(),
            ArgKind::Device => "Device".to_string(),
            ArgKind::MemoryFormat => "MemoryFormat".to_string(),
            ArgKind::Generator => "Generator".to_string(),
        };
        if self.optional {
            format!("{base}?")
        } else {
            base
        }
    }
}

/// A short description of an argument's kind, for error messages.
pub fn describe_arg(arg: &Arg) -> String {
    match arg {
        Arg::None => "None",
        Arg::Tensor(_) => "Tensor",
        Arg::Tensors(_) => "Tensor[]",
        Arg::OptTensors(_) => "Tensor?[]",
        Arg::Int(_) => "int",
        Arg::SymInt(_) => "SymInt",
        Arg::Ints(_) => "int[]",
        Arg::SymInts(_) => "SymInt[]",
        Arg::Float(_) => "float",
        Arg::Floats(_) => "float[]",
        Arg::Bool(_) => "bool",
        Arg::Bools(_) => "bool[]",
        Arg::Str(_) => "str",
        Arg::DType(_) => "ScalarType",
        Arg::Device(_) => "Device",
        Arg::Layout(_) => "Layout",
        Arg::MemoryFormat(_) => "MemoryFormat",
    }
    .to_string()
}

/// Split on commas that are not inside brackets, parentheses or quotes.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut quoted) = (0i32, 0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(&s[start..]);
    }
    out
}

fn parse_arg(piece: &str, keyword_only: bool) -> Result<ArgSpec, String> {
    let (decl, default) = match piece.split_once('=') {
        Some((d, v)) => (d.trim(), Some(v.trim())),
        None => (piece, None),
    };
    let (ty, name) = decl.rsplit_once(' ').ok_or_else(|| format!("argument `{piece}` has no name"))?;
    let mutated = ty.contains('!');
    // Drop alias annotations: `Tensor(a!)` -> `Tensor`, `Tensor(a -> *)` -> `Tensor`.
    let mut clean = String::new();
    let mut depth = 0;
    for c in ty.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let mut ty = clean.as_str();
    let optional = ty.ends_with('?');
    if optional {
        ty = &ty[..ty.len() - 1];
    }
    let list_len = |t: &str| -> Result<Option<usize>, String> {
        let inner = &t[t.find('[').unwrap_or(t.len()) + 1..t.len() - 1];
        if inner.is_empty() {
            Ok(None)
        } else {
            inner.parse().map(Some).map_err(|_| format!("bad list size in `{t}`"))
        }
    };
    let kind = match ty {
        "Tensor" => ArgKind::Tensor,
        "Tensor[]" => ArgKind::TensorList,
        "Tensor?[]" => ArgKind::OptTensorList,
        "int" => ArgKind::Int,
        "SymInt" => ArgKind::SymInt,
        "float" => ArgKind::Float,
        "float[]" => ArgKind::FloatList,
        "bool" => ArgKind::Bool,
        "str" => ArgKind::Str,
        "Scalar" => ArgKind::Scalar,
        "ScalarType" => ArgKind::ScalarType,
        "Layout" => ArgKind::Layout,
        "Device" => ArgKind::Device,
        "MemoryFormat" => ArgKind::MemoryFormat,
        "Generator" => ArgKind::Generator,
        t if t.starts_with("int[") => ArgKind::IntList(list_len(t)?),
        t if t.starts_with("SymInt[") => ArgKind::SymIntList(list_len(t)?),
        t if t.starts_with("bool[") => ArgKind::BoolList(list_len(t)?),
        t => return Err(format!("unknown argument type `{t}`")),
    };
    let default = match default {
        None => None,
        Some(text) => Some(parse_default(&kind, text).ok_or_else(|| format!("cannot read default `{text}`"))?),
    };
    Ok(ArgSpec { name: name.to_string(), kind, optional, keyword_only, default, mutated })
}

fn parse_default(kind: &ArgKind, text: &str) -> Option<Arg> {
    if text == "None" {
        return Some(Arg::None);
    }
    let ints = |text: &str| -> Option<Vec<i64>> {
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
    };
    Some(match kind {
        ArgKind::Int | ArgKind::SymInt => Arg::Int(text.parse().ok()?),
        ArgKind::Float => Arg::Float(text.parse().ok()?),
        ArgKind::Bool => Arg::Bool(text == "True"),
        ArgKind::Str => Arg::Str(text.trim_matches('"').trim_matches('\'').to_string()),
        ArgKind::Scalar => match text.parse::<i64>() {
            Ok(v) => Arg::Int(v),
            Err(_) => Arg::Float(text.parse().ok()?),
        },
        ArgKind::IntList(n) | ArgKind::SymIntList(n) => {
            let v = match text.parse::<i64>() {
                Ok(single) => vec![single; n.unwrap_or(1)],
                Err(_) => ints(text)?,
            };
            Arg::Ints(v)
        }
        ArgKind::BoolList(_) => {
            Arg::Bools(text.strip_prefix('[')?.strip_suffix(']')?.split(',').map(|s| s.trim() == "True").collect())
        }
        // `str(schema)` writes enum defaults as their index (`MemoryFormat memory_format=0`).
        ArgKind::ScalarType => Arg::DType(match text.parse::<i64>() {
            Ok(i) => DType::ALL.into_iter().find(|d| d.scalar_type_index() == i)?,
            Err(_) => DType::from_name(text)?,
        }),
        ArgKind::MemoryFormat => Arg::MemoryFormat(
            match text {
                "0" => "contiguous_format",
                "1" => "preserve_format",
                "2" => "channels_last",
                "3" => "channels_last_3d",
                other => other,
            }
            .to_string(),
        ),
        ArgKind::Layout => Arg::Layout(text.to_string()),
        _ => return None,
    })
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", a.describe(), a.name)?;
        }
        f.write_str(")")
    }
}

/// Convert a dim list to an argument, used by importers for `SymInt[]`.
pub fn dims_arg(ds: Vec<Dim>) -> Arg {
    Arg::sym_ints(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ValueId;

    #[test]
    fn parses_torch_schemas() {
        let s = Schema::parse(
            "aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], SymInt[2] padding=[0, 0], SymInt[2] dilation=[1, 1], SymInt groups=1) -> Tensor",
        )
        .unwrap();
        assert_eq!(s.name, "aten.conv2d.default");
        assert_eq!(s.args.len(), 7);
        assert_eq!(s.args[3].default, Some(Arg::Ints(vec![1, 1])));
        let s =
            Schema::parse("aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)").unwrap();
        assert_eq!(s.name, "aten.add_.Tensor");
        assert_eq!(s.mutated_arg(), Some(0));
        assert!(s.args[2].keyword_only);
        let s = Schema::parse("aten::split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]")
            .unwrap();
        assert_eq!(s.returns, Returns::List);
        let s = Schema::parse("aten::max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor").unwrap();
        assert_eq!(s.args[3].default, Some(Arg::Ints(vec![0, 0])));
        assert_eq!(s.args[2].default, Some(Arg::Ints(vec![])));
        // A library's custom op keeps its namespace in the name.
        let s = Schema::parse("transformers::grouped_mm_fallback(Tensor input, Tensor weight, Tensor offs) -> Tensor")
            .unwrap();
        assert_eq!(s.name, "transformers.grouped_mm_fallback.default");
        assert_eq!(s.args.len(), 3);
    }

    #[test]
    fn bind_fills_defaults_and_rejects_bad_calls() {
        let s = Schema::parse("aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor").unwrap();
        let args = s.bind(vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1))], vec![]).unwrap();
        assert_eq!(args[2], Arg::Int(1));
        let err = s.bind(vec![Arg::Tensor(ValueId(0))], vec![]).unwrap_err();
        assert!(matches!(err, ArgError::Missing { .. }), "{err}");
        let err = s
            .bind(vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1))], vec![("beta".into(), Arg::Int(2))])
            .unwrap_err();
        assert!(matches!(err, ArgError::UnknownKeyword { .. }), "{err}");
        let err = s.bind(vec![Arg::Int(3), Arg::Tensor(ValueId(1))], vec![]).unwrap_err();
        assert!(matches!(err, ArgError::Kind { index: 0, .. }), "{err}");
    }
}
