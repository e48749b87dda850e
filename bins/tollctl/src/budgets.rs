//! `tollctl budgets ...`: budgets at every scope, their resets and temporary increases.

use crate::cli::{Output, authed, print_json, print_table, status_error};
use clap::Subcommand;
use serde_json::json;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

#[derive(Debug, Subcommand)]
pub(crate) enum BudgetsCommand {
    /// Create a budget; exactly one of --limit-usd and --limit-tokens.
    Create {
        /// organization, team, project, principal or virtual_key.
        #[arg(long)]
        scope: String,
        /// The target: an id, or for organization / team / project a name.
        #[arg(long)]
        scope_id: String,
        /// Money limit in USD (e.g. 500.00).
        #[arg(long, allow_hyphen_values = true, conflicts_with = "limit_tokens")]
        limit_usd: Option<String>,
        /// Token limit (input + output).
        #[arg(long)]
        limit_tokens: Option<u64>,
        /// minute, hour, day, week, month or total.
        #[arg(long)]
        window: String,
        /// block (default), warn or clamp (lower a request's output cap to what the
        /// budget affords; below the floor, refuse like block).
        #[arg(long)]
        on_breach: Option<String>,
        /// Alert at this fraction of the limit (e.g. 0.8); repeat for several.
        #[arg(long = "alert-threshold")]
        alert_thresholds: Vec<String>,
        /// With --on-breach clamp: the fewest output tokens a request may be clamped to
        /// (default 16).
        #[arg(long)]
        clamp_floor_tokens: Option<u64>,
    },
    /// List budgets.
    List {
        /// Only this scope kind.
        #[arg(long)]
        scope: Option<String>,
        /// Only this scope target (id, or name for organization / team / project).
        #[arg(long)]
        scope_id: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one budget.
    Get {
        /// Budget id.
        id: String,
    },
    /// Change a budget; options left out stay as they are.
    Update {
        /// Budget id.
        id: String,
        /// New money limit in USD (makes it a money budget).
        #[arg(long, allow_hyphen_values = true, conflicts_with = "limit_tokens")]
        limit_usd: Option<String>,
        /// New token limit (makes it a token budget).
        #[arg(long)]
        limit_tokens: Option<u64>,
        /// New window.
        #[arg(long)]
        window: Option<String>,
        /// New breach behaviour: block, warn or clamp.
        #[arg(long)]
        on_breach: Option<String>,
        /// New clamp floor of a clamp budget, in output tokens.
        #[arg(long, conflicts_with = "clear_clamp_floor_tokens")]
        clamp_floor_tokens: Option<u64>,
        /// Back to the default clamp floor (16).
        #[arg(long)]
        clear_clamp_floor_tokens: bool,
        /// Replace the alert thresholds (e.g. 0.8); repeat for several.
        #[arg(long = "alert-threshold", conflicts_with = "clear_alert_thresholds")]
        alert_thresholds: Vec<String>,
        /// Remove every alert threshold.
        #[arg(long)]
        clear_alert_thresholds: bool,
        /// End the temporary increase now.
        #[arg(long)]
        clear_increase: bool,
    },
    /// Delete a budget.
    Delete {
        /// Budget id.
        id: String,
    },
    /// Start the budget's window afresh on every gateway.
    Reset {
        /// Budget id.
        id: String,
    },
    /// Raise the limit for a while; replaces an increase in force.
    Increase {
        /// Budget id.
        id: String,
        /// Increase of a money budget, in USD.
        #[arg(long, allow_hyphen_values = true, conflicts_with = "tokens", required_unless_present = "tokens")]
        amount_usd: Option<String>,
        /// Increase of a token budget.
        #[arg(long)]
        tokens: Option<u64>,
        /// When the increase ends (RFC 3339).
        #[arg(long, conflicts_with = "duration_s", required_unless_present = "duration_s")]
        expires_at: Option<String>,
        /// How long the increase lasts, in seconds from now.
        #[arg(long)]
        duration_s: Option<u64>,
    },
}

/// Runs a `budgets` command.
pub(crate) async fn budgets(
    client: &mut AdminServiceClient<Channel>,
    token: &str,
    output: Output,
    cmd: BudgetsCommand,
) -> anyhow::Result<()> {
    let budget = match cmd {
        BudgetsCommand::Create {
            scope,
            scope_id,
            limit_usd,
            limit_tokens,
            window,
            on_breach,
            alert_thresholds,
            clamp_floor_tokens,
        } => {
            let req = v1::CreateBudgetRequest {
                scope,
                scope_id,
                limit_usd,
                limit_tokens,
                window,
                on_breach,
                alert_thresholds,
                clamp_floor_tokens,
            };
            client.create_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::List { scope, scope_id, limit, after } => {
            let req = v1::ListBudgetsRequest { scope, scope_id, limit, after };
            let resp = client.list_budgets(authed(req, token)?).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&json!({
                    "data": resp.budgets.iter().map(budget_json).collect::<Vec<_>>(),
                    "next_after": resp.next_after,
                })),
                Output::Table => {
                    print_budgets(&resp.budgets);
                    if let Some(next) = resp.next_after {
                        println!("\nmore: --after {next}");
                    }
                }
            }
            return Ok(());
        }
        BudgetsCommand::Get { id } => {
            client.get_budget(authed(v1::GetBudgetRequest { id }, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Update {
            id,
            limit_usd,
            limit_tokens,
            window,
            on_breach,
            clamp_floor_tokens,
            clear_clamp_floor_tokens,
            alert_thresholds,
            clear_alert_thresholds,
            clear_increase,
        } => {
            let thresholds = (clear_alert_thresholds || !alert_thresholds.is_empty())
                .then_some(v1::AlertThresholds { values: alert_thresholds });
            let req = v1::UpdateBudgetRequest {
                id,
                limit_usd,
                limit_tokens,
                window,
                on_breach,
                alert_thresholds: thresholds,
                clear_temporary_increase: clear_increase,
                clamp_floor_tokens,
                clear_clamp_floor_tokens,
            };
            client.update_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Delete { id } => {
            let req = v1::DeleteBudgetRequest { id: id.clone() };
            client.delete_budget(authed(req, token)?).await.map_err(status_error)?;
            match output {
                Output::Json => print_json(&json!({"id": id, "deleted": true})),
                Output::Table => println!("deleted budget {id}"),
            }
            return Ok(());
        }
        BudgetsCommand::Reset { id } => {
            client.reset_budget(authed(v1::ResetBudgetRequest { id }, token)?).await.map_err(status_error)?.into_inner()
        }
        BudgetsCommand::Increase { id, amount_usd, tokens, expires_at, duration_s } => {
            let req = v1::IncreaseBudgetRequest { id, amount_usd, tokens, expires_at, duration_s };
            client.increase_budget(authed(req, token)?).await.map_err(status_error)?.into_inner()
        }
    };
    match output {
        Output::Json => print_json(&budget_json(&budget)),
        Output::Table => print_budgets(std::slice::from_ref(&budget)),
    }
    Ok(())
}

/// Per-mille as the fraction the REST API shows (`800` → `"0.8"`).
fn fraction(permille: u32) -> String {
    let frac = format!("{:03}", permille % 1000);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", permille / 1000, if frac.is_empty() { "0" } else { frac })
}

/// A budget in the same JSON shape as the REST API's budget view.
pub(crate) fn budget_json(b: &v1::BudgetInfo) -> serde_json::Value {
    let increase = match (b.temporary_increase.as_str(), &b.temporary_increase_until) {
        ("", _) | (_, None) => serde_json::Value::Null,
        (amount, Some(until)) => {
            let amount = match (b.limit_tokens, amount.parse::<u64>()) {
                (Some(_), Ok(tokens)) => json!(tokens),
                _ => json!(amount),
            };
            json!({"amount": amount, "until": until})
        }
    };
    let mut v = json!({
        "id": b.id, "scope": b.scope, "scope_id": b.scope_id,
        "limit_usd": if b.limit_usd.is_empty() { None } else { Some(&b.limit_usd) },
        "limit_tokens": b.limit_tokens, "window": b.window, "on_breach": b.on_breach,
        "alert_thresholds": b.alert_thresholds_permille.iter().map(|&p| fraction(p)).collect::<Vec<_>>(),
        "epoch": b.epoch, "temporary_increase": increase,
        "created_at": b.created_at, "updated_at": b.updated_at,
    });
    // As in the REST view: only a clamp budget shows its floor.
    if let (Some(floor), Some(obj)) = (b.clamp_floor_tokens, v.as_object_mut()) {
        obj.insert("clamp_floor_tokens".into(), floor.into());
    }
    v
}

fn print_budgets(budgets: &[v1::BudgetInfo]) {
    let header = ["ID", "SCOPE", "SCOPE_ID", "LIMIT", "WINDOW", "ON_BREACH", "ALERTS", "EPOCH", "INCREASE", "UPDATED"];
    let rows: Vec<[String; 10]> = budgets
        .iter()
        .map(|b| {
            let (limit, increase) = match b.limit_tokens {
                Some(t) => (format!("{t} tokens"), format!("+{} tokens", b.temporary_increase)),
                None => (format!("${}", b.limit_usd), format!("+${}", b.temporary_increase)),
            };
            let increase = match &b.temporary_increase_until {
                Some(until) if !b.temporary_increase.is_empty() => format!("{increase} until {until}"),
                _ => String::new(),
            };
            [
                b.id.clone(),
                b.scope.clone(),
                b.scope_id.clone(),
                limit,
                b.window.clone(),
                match b.clamp_floor_tokens {
                    Some(floor) => format!("{} (floor {floor})", b.on_breach),
                    None => b.on_breach.clone(),
                },
                b.alert_thresholds_permille.iter().map(|&p| fraction(p)).collect::<Vec<_>>().join(","),
                b.epoch.to_string(),
                increase,
                b.updated_at.clone(),
            ]
        })
        .collect();
    print_table(&header, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_print_as_the_fractions_the_api_takes() {
        assert_eq!(fraction(800), "0.8");
        assert_eq!(fraction(1000), "1.0");
        assert_eq!(fraction(125), "0.125");
        assert_eq!(fraction(50), "0.05");
    }

    #[test]
    fn budget_json_matches_the_rest_view() {
        let b = v1::BudgetInfo {
            id: "bud_1".into(),
            scope: "team".into(),
            scope_id: "team_1".into(),
            limit_usd: String::new(),
            limit_tokens: Some(1000),
            window: "day".into(),
            on_breach: "warn".into(),
            alert_thresholds_permille: vec![500, 800],
            epoch: 3,
            temporary_increase: "250".into(),
            temporary_increase_until: Some("2030-01-01T00:00:00Z".into()),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-02T00:00:00Z".into(),
            clamp_floor_tokens: None,
        };
        let v = budget_json(&b);
        assert_eq!(v["limit_usd"], serde_json::Value::Null);
        assert!(v.get("clamp_floor_tokens").is_none(), "only a clamp budget shows a floor");
        let clamp =
            budget_json(&v1::BudgetInfo { on_breach: "clamp".into(), clamp_floor_tokens: Some(16), ..b.clone() });
        assert_eq!((clamp["on_breach"].clone(), clamp["clamp_floor_tokens"].clone()), (json!("clamp"), json!(16)));
        assert_eq!(v["limit_tokens"], 1000);
        assert_eq!(v["alert_thresholds"], json!(["0.5", "0.8"]));
        assert_eq!(v["temporary_increase"], json!({"amount": 250, "until": "2030-01-01T00:00:00Z"}));
        let none = budget_json(&v1::BudgetInfo { temporary_increase: String::new(), ..b });
        assert_eq!(none["temporary_increase"], serde_json::Value::Null);
    }
}
