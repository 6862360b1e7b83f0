//! Finding services and methods in a descriptor pool by the names a person types.

use std::fmt;

use prost_reflect::{DescriptorPool, MethodDescriptor, ServiceDescriptor};

/// A name that is not in the descriptors, with what is there instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    /// Not of the form `package.Service/Method` or `package.Service.Method`.
    #[error(
        "invalid method name {0:?}: expected package.Service/Method (or package.Service.Method)"
    )]
    BadMethodName(String),
    /// No service of that name.
    #[error("unknown service {service}; {}", Known("known services", known))]
    UnknownService {
        /// The service asked for.
        service: String,
        /// The services the descriptors define, sorted.
        known: Vec<String>,
    },
    /// The service has no method of that name.
    #[error(
        "service {service} has no method {method}; {}",
        Known("its methods", known)
    )]
    UnknownMethod {
        /// The service, fully qualified.
        service: String,
        /// The method asked for.
        method: String,
        /// The service's methods, in declaration order.
        known: Vec<String>,
    },
    /// A service was named where a method was wanted.
    #[error(
        "{service} is a service, not a method: name one as {service}/Method; {}",
        Known("its methods", known)
    )]
    NotAMethod {
        /// The service, fully qualified.
        service: String,
        /// The service's methods, in declaration order.
        known: Vec<String>,
    },
}

/// Renders `label: a, b, c`, or says there are none.
struct Known<'a>(&'static str, &'a [String]);

impl fmt::Display for Known<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Known(label, names) = self;
        if names.is_empty() {
            write!(f, "{label}: none")
        } else {
            write!(f, "{label}: {}", names.join(", "))
        }
    }
}

/// A method name split into its fully-qualified service and its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MethodName<'a> {
    /// `package.Service`.
    pub(crate) service: &'a str,
    /// `Method`.
    pub(crate) method: &'a str,
}

/// Splits `package.Service/Method`, `/package.Service/Method` (a request path) or
/// `package.Service.Method`.
pub(crate) fn parse_method(name: &str) -> Result<MethodName<'_>, LookupError> {
    let bad = || LookupError::BadMethodName(name.to_owned());
    let trimmed = name.strip_prefix('/').unwrap_or(name);
    let (service, method) = match trimmed.split_once('/') {
        Some(parts) => parts,
        None => trimmed.rsplit_once('.').ok_or_else(bad)?,
    };
    let service = service.strip_prefix('.').unwrap_or(service);
    let valid = |part: &str| !part.is_empty() && !part.contains('/');
    if !valid(service) || !valid(method) || method.contains('.') || service.ends_with('.') {
        return Err(bad());
    }
    Ok(MethodName { service, method })
}

/// The service of that fully-qualified name (a leading `.` is accepted).
pub(crate) fn find_service(
    pool: &DescriptorPool,
    service: &str,
) -> Result<ServiceDescriptor, LookupError> {
    let service = service.strip_prefix('.').unwrap_or(service);
    pool.get_service_by_name(service)
        .ok_or_else(|| LookupError::UnknownService {
            service: service.to_owned(),
            known: service_names(pool),
        })
}

/// The method a person named, in any form [`parse_method`] accepts.
pub(crate) fn find_method(
    pool: &DescriptorPool,
    name: &str,
) -> Result<MethodDescriptor, LookupError> {
    let parsed = match parse_method(name) {
        Ok(parsed) => parsed,
        // A bare `Service` (no dot) cannot be a method: say so if it is a service.
        Err(error) => return Err(not_a_method(pool, name).unwrap_or(error)),
    };
    let service = match find_service(pool, parsed.service) {
        Ok(service) => service,
        Err(error) => return Err(not_a_method(pool, name).unwrap_or(error)),
    };
    service
        .methods()
        .find(|method| method.name() == parsed.method)
        .ok_or_else(|| LookupError::UnknownMethod {
            service: service.full_name().to_owned(),
            method: parsed.method.to_owned(),
            known: method_names(&service),
        })
}

/// [`LookupError::NotAMethod`] if `name` is a whole service name.
fn not_a_method(pool: &DescriptorPool, name: &str) -> Option<LookupError> {
    let name = name.trim_start_matches(['/', '.']);
    let service = pool.get_service_by_name(name)?;
    Some(LookupError::NotAMethod {
        service: service.full_name().to_owned(),
        known: method_names(&service),
    })
}

/// Every service of the pool, sorted.
pub(crate) fn service_names(pool: &DescriptorPool) -> Vec<String> {
    let mut names: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
    names.sort();
    names
}

fn method_names(service: &ServiceDescriptor) -> Vec<String> {
    service.methods().map(|m| m.name().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str) -> Option<(&str, &str)> {
        parse_method(name).ok().map(|m| (m.service, m.method))
    }

    #[test]
    fn parses_method_names() {
        let expected = Some(("grpctest.Test", "Double"));
        assert_eq!(split("grpctest.Test/Double"), expected);
        assert_eq!(split("/grpctest.Test/Double"), expected);
        assert_eq!(split("grpctest.Test.Double"), expected);
        assert_eq!(split(".grpctest.Test.Double"), expected);
        assert_eq!(split("Test/Double"), Some(("Test", "Double")));
        assert_eq!(split("a.b.c.Svc.M"), Some(("a.b.c.Svc", "M")));
        for bad in [
            "", "Double", "/", "a/", "/M", "a.", ".M", "a/b/c", "a/b.c", "a./M",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lists_alternatives() {
        let error = LookupError::UnknownService {
            service: "x.Y".into(),
            known: vec!["a.B".into(), "c.D".into()],
        };
        assert_eq!(
            error.to_string(),
            "unknown service x.Y; known services: a.B, c.D"
        );
        let error = LookupError::UnknownMethod {
            service: "a.B".into(),
            method: "Nope".into(),
            known: vec![],
        };
        assert_eq!(
            error.to_string(),
            "service a.B has no method Nope; its methods: none"
        );
    }
}
