//! The closed sets of names records carry (identity kinds, assigned roles, changefeed
//! categories, server key roles): enums in memory, their exact stored strings in the databases.

/// A stored name outside its set: damage, or a row written by a newer Berth. Reading one is a
/// store error ([`crate::Error::Backend`]), never a panic or a default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownKind {
    /// Which set, e.g. `identity kind`.
    pub what: &'static str,
    pub value: String,
}

impl From<UnknownKind> for crate::Error {
    fn from(e: UnknownKind) -> Self {
        crate::Error::Backend(format!("stored {e} (damaged, or written by a newer Berth)"))
    }
}

/// Defines an enum over fixed strings with `as_str`, `FromStr` (to [`UnknownKind`]),
/// `Display` and `ALL`.
macro_rules! stored_kind {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string stored in the databases (and shown on the wire).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::UnknownKind {
                        what: $what,
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}

stored_kind! {
    /// What an identity is (the `kind` column).
    IdentityKind("identity kind") {
        User => "user",
        ServicePrincipal => "service-principal",
        /// The shared admin account.
        Admin => "admin",
        /// A repository-scoped token.
        Token => "token",
    }
}

stored_kind! {
    /// A role assigned to an identity, registry-wide or on repositories. The set is closed:
    /// berth-auth's policy says what each grants, and the admin API accepts only these.
    AssignedRole("role") {
        AcrPull => "AcrPull",
        AcrPush => "AcrPush",
        AcrDelete => "AcrDelete",
        AcrImageSigner => "AcrImageSigner",
        Owner => "Owner",
        MetricsReader => "MetricsReader",
    }
}

stored_kind! {
    /// What a changefeed entry records (Notary's `Category`).
    ChangeCategory("changefeed category") {
        /// A timestamp was written.
        Update => "update",
        /// A GUN's trust data was deleted.
        Deletion => "deletion",
    }
}

stored_kind! {
    /// The roles whose keys the server holds.
    ServerKeyRole("server key role") {
        Timestamp => "timestamp",
        Snapshot => "snapshot",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are the ones databases already hold: changing one would orphan rows.
    #[test]
    fn every_kind_round_trips_through_its_stored_string() {
        let ids: Vec<&str> = IdentityKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(ids, ["user", "service-principal", "admin", "token"]);
        let cats: Vec<&str> = ChangeCategory::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(cats, ["update", "deletion"]);
        let roles: Vec<&str> = ServerKeyRole::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(roles, ["timestamp", "snapshot"]);
        let assigned: Vec<&str> = AssignedRole::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            assigned,
            [
                "AcrPull",
                "AcrPush",
                "AcrDelete",
                "AcrImageSigner",
                "Owner",
                "MetricsReader"
            ]
        );
        for k in AssignedRole::ALL {
            assert_eq!(k.as_str().parse::<AssignedRole>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        for k in IdentityKind::ALL {
            assert_eq!(k.as_str().parse::<IdentityKind>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        for k in ChangeCategory::ALL {
            assert_eq!(k.as_str().parse::<ChangeCategory>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        for k in ServerKeyRole::ALL {
            assert_eq!(k.as_str().parse::<ServerKeyRole>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
    }

    #[test]
    fn names_outside_the_set_are_refused_exactly() {
        for s in ["", "User", "user ", "anonymous", "robot"] {
            assert_eq!(
                s.parse::<IdentityKind>(),
                Err(UnknownKind {
                    what: "identity kind",
                    value: s.to_owned()
                })
            );
        }
        assert!("Update".parse::<ChangeCategory>().is_err());
        assert!("owner".parse::<AssignedRole>().is_err());
        assert!("Reader".parse::<AssignedRole>().is_err());
        assert!("created".parse::<ChangeCategory>().is_err());
        // Other roles' keys are the clients' own, never the server's.
        for s in ["root", "targets", "targets/releases", "Timestamp"] {
            assert!(s.parse::<ServerKeyRole>().is_err(), "{s}");
        }
    }

    #[test]
    fn an_unknown_stored_name_is_a_backend_error_naming_it() {
        let e = crate::Error::from("robot".parse::<IdentityKind>().unwrap_err());
        match e {
            crate::Error::Backend(msg) => {
                assert!(msg.contains("identity kind \"robot\""), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }
}
