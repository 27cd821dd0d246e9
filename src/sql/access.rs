//! Users and secrets: `CREATE | ALTER | DROP USER` (and `ROLE`, as in
//! PostgreSQL), and `CREATE | ALTER | DROP SECRET`.
//!
//! ```sql
//! CREATE USER alice WITH PASSWORD 'x';            -- may only read
//! CREATE USER ops WITH SUPERUSER PASSWORD 'y';    -- may do anything
//! ALTER USER alice WITH PASSWORD 'z';
//! DROP USER IF EXISTS alice;
//! CREATE SECRET kafka_pw AS 'hunter2';
//! CREATE SOURCE s (…) WITH (…, 'properties.sasl.password' = SECRET kafka_pw);
//! ```
//!
//! Passwords and secret values are carried as [`Redacted`], which never
//! prints its contents.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statement::{check_object_name, normalize_ident, Statement};
use super::tokens::{is_word, parser_error, starts_with_words, StatementTokens, DIALECT};
use crate::error::{EddyError, Result};

/// A password or secret value: its `Debug` and `Display` print nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("'<redacted>'")
    }
}

/// A statement about users or secrets.
#[derive(Debug, Clone)]
pub enum Access {
    /// `CREATE USER | ROLE name [WITH] [SUPERUSER] PASSWORD '…'`.
    CreateUser {
        /// User name.
        name: String,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The password.
        password: Redacted,
        /// `SUPERUSER`: an admin; otherwise the user may only read.
        superuser: bool,
    },
    /// `ALTER USER | ROLE name [WITH] [PASSWORD '…'] [[NO]SUPERUSER]`.
    AlterUser {
        /// User name.
        name: String,
        /// A new password.
        password: Option<Redacted>,
        /// A new role.
        superuser: Option<bool>,
    },
    /// `DROP USER | ROLE [IF EXISTS] names`.
    DropUsers {
        /// User names.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
    /// `CREATE SECRET [IF NOT EXISTS] name AS '…'`.
    CreateSecret {
        /// Secret name.
        name: String,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The value.
        value: Redacted,
    },
    /// `ALTER SECRET name AS '…'`.
    AlterSecret {
        /// Secret name.
        name: String,
        /// The new value.
        value: Redacted,
    },
    /// `DROP SECRET [IF EXISTS] names`.
    DropSecrets {
        /// Secret names.
        names: Vec<String>,
        /// `IF EXISTS` was given.
        if_exists: bool,
    },
}

/// The statement, if `st` is about users or secrets.
pub fn parse_access(sql: &str, st: &StatementTokens) -> Result<Option<Statement>> {
    let t = &st.tokens;
    let on = |verb: &str| {
        ["USER", "ROLE", "SECRET"]
            .into_iter()
            .find(|what| starts_with_words(t, &[verb, what]))
    };
    let mut p = Parser::new(&DIALECT).with_tokens_with_locations(t.clone());
    let access = if let Some(what) = on("CREATE") {
        p.next_token();
        p.next_token();
        if what == "SECRET" {
            create_secret(sql, &mut p)?
        } else {
            create_user(sql, &mut p)?
        }
    } else if let Some(what) = on("ALTER") {
        p.next_token();
        p.next_token();
        if what == "SECRET" {
            let name = name(sql, &mut p)?;
            Access::AlterSecret {
                name,
                value: as_value(sql, &mut p)?,
            }
        } else {
            alter_user(sql, &mut p)?
        }
    } else if let Some(what) = on("DROP") {
        p.next_token();
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let mut names = vec![name(sql, &mut p)?];
        while p.consume_token(&Token::Comma) {
            names.push(name(sql, &mut p)?);
        }
        if what == "SECRET" {
            Access::DropSecrets { names, if_exists }
        } else {
            Access::DropUsers { names, if_exists }
        }
    } else {
        return Ok(None);
    };
    end(sql, &mut p)?;
    Ok(Some(Statement::Access(access)))
}

fn name(sql: &str, p: &mut Parser) -> Result<String> {
    let id = p.parse_identifier().map_err(|e| parser_error(sql, e))?;
    let name = normalize_ident(&id);
    check_object_name(&name)?;
    Ok(name)
}

fn end(sql: &str, p: &mut Parser) -> Result<()> {
    let t = p.peek_token();
    if t.token == Token::EOF {
        return Ok(());
    }
    Err(EddyError::Syntax {
        message: format!("syntax error at or near \"{}\"", t.token),
        position: Some(super::tokens::char_position(sql, t.span.start)),
    })
}

/// A quoted string: the password or secret value.
fn string(sql: &str, p: &mut Parser, what: &str) -> Result<Redacted> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => Ok(Redacted(s)),
        Token::DollarQuotedString(s) => Ok(Redacted(s.value)),
        other => Err(EddyError::Syntax {
            message: format!("syntax error: expected the {what} as a quoted string, found {other}"),
            position: Some(super::tokens::char_position(sql, t.span.start)),
        }),
    }
}

fn as_value(sql: &str, p: &mut Parser) -> Result<Redacted> {
    p.expect_keyword(Keyword::AS)
        .map_err(|e| parser_error(sql, e))?;
    string(sql, p, "secret's value")
}

fn create_secret(sql: &str, p: &mut Parser) -> Result<Access> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name(sql, p)?;
    Ok(Access::CreateSecret {
        name,
        if_not_exists,
        value: as_value(sql, p)?,
    })
}

/// The role options eddy has: a password and whether the user is an admin.
#[derive(Default)]
struct RoleOptions {
    password: Option<Redacted>,
    superuser: Option<bool>,
}

fn role_options(sql: &str, p: &mut Parser) -> Result<RoleOptions> {
    let mut out = RoleOptions::default();
    let _ = p.parse_keyword(Keyword::WITH);
    loop {
        let t = p.peek_token();
        if t.token == Token::EOF {
            return Ok(out);
        }
        p.next_token();
        if is_word(&t.token, "PASSWORD") {
            if is_word(&p.peek_token().token, "NULL") {
                return Err(EddyError::NotSupported {
                    message: "PASSWORD NULL: eddy users log in with a password".into(),
                    hint: Some("DROP USER to take a user's access away.".into()),
                });
            }
            out.password = Some(string(sql, p, "password")?);
        } else if is_word(&t.token, "SUPERUSER") {
            out.superuser = Some(true);
        } else if is_word(&t.token, "NOSUPERUSER") {
            out.superuser = Some(false);
        } else if is_word(&t.token, "LOGIN") || is_word(&t.token, "INHERIT") {
            // What every eddy user is anyway.
        } else {
            return Err(EddyError::NotSupported {
                message: format!("role option {} is not supported", t.token),
                hint: Some(
                    "eddy has two kinds of user: SUPERUSER (may do anything) and the default \
                     (may only read); each logs in with PASSWORD '…'."
                        .into(),
                ),
            });
        }
    }
}

fn create_user(sql: &str, p: &mut Parser) -> Result<Access> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name(sql, p)?;
    let options = role_options(sql, p)?;
    let Some(password) = options.password else {
        return Err(EddyError::InvalidParameter {
            message: format!("user \"{name}\" needs a password"),
            hint: Some(format!("CREATE USER {name} WITH PASSWORD '…'")),
        });
    };
    Ok(Access::CreateUser {
        name,
        if_not_exists,
        password,
        superuser: options.superuser.unwrap_or(false),
    })
}

fn alter_user(sql: &str, p: &mut Parser) -> Result<Access> {
    let name = name(sql, p)?;
    if is_word(&p.peek_token().token, "RENAME") {
        return Err(EddyError::not_supported(
            "ALTER USER … RENAME: drop the user and create it again",
        ));
    }
    let options = role_options(sql, p)?;
    if options.password.is_none() && options.superuser.is_none() {
        return Err(EddyError::syntax(
            "ALTER USER needs PASSWORD '…', SUPERUSER or NOSUPERUSER",
        ));
    }
    Ok(Access::AlterUser {
        name,
        password: options.password,
        superuser: options.superuser,
    })
}

/// Option names whose values are credentials: they must come from a secret
/// (`'key' = SECRET name`), never inline, so they cannot reach the catalog.
pub fn is_credential_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("key.pem")
        || k.ends_with("sasl.jaas.config")
        || k.ends_with("sasl.oauthbearer.config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Access {
        match crate::sql::parse(sql).unwrap().remove(0) {
            Statement::Access(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn users_and_secrets_parse_and_never_print_their_values() {
        let a = one("CREATE USER Alice WITH PASSWORD 'pw1'");
        assert!(matches!(&a, Access::CreateUser { name, superuser: false, .. } if name == "alice"));
        assert!(!format!("{a:?}").contains("pw1"));
        let a = one("create role ops with login superuser password 'x'");
        assert!(matches!(
            a,
            Access::CreateUser {
                superuser: true,
                ..
            }
        ));
        let a = one("ALTER USER alice NOSUPERUSER");
        assert!(matches!(
            a,
            Access::AlterUser {
                password: None,
                superuser: Some(false),
                ..
            }
        ));
        let a = one("DROP ROLE IF EXISTS a, b");
        assert!(matches!(a, Access::DropUsers { names, if_exists: true } if names.len() == 2));
        let a = one("CREATE SECRET IF NOT EXISTS k AS 'v3ry'");
        assert!(!format!("{a:?}").contains("v3ry"));
        assert!(matches!(
            one("ALTER SECRET k AS $$x$$"),
            Access::AlterSecret { .. }
        ));
        assert!(matches!(one("DROP SECRET k"), Access::DropSecrets { .. }));
        for (bad, code) in [
            ("CREATE USER bob", "22023"),
            ("CREATE USER bob WITH CREATEDB PASSWORD 'x'", "0A000"),
            ("CREATE USER bob PASSWORD NULL", "0A000"),
            ("CREATE SECRET s AS 42", "42601"),
            ("CREATE SECRET s 'x'", "42601"),
            ("ALTER USER bob", "42601"),
            ("CREATE USER \"a/b\" PASSWORD 'x'", "42602"),
        ] {
            let e = crate::sql::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), code, "{bad}: {e}");
        }
    }

    #[test]
    fn credential_options_are_recognised() {
        for k in [
            "properties.sasl.password",
            "properties.ssl.key.password",
            "properties.ssl.key.pem",
            "properties.sasl.oauthbearer.client.secret",
        ] {
            assert!(is_credential_option(k), "{k}");
        }
        for k in [
            "topic",
            "properties.bootstrap.servers",
            "properties.sasl.username",
        ] {
            assert!(!is_credential_option(k), "{k}");
        }
    }
}
