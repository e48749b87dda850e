//! `AdminService` budget RPCs over the same service layer as REST, and a budget change
//! reaching a gateway's `Watch` stream (as a full snapshot, for a caller that takes no changes).

use crate::{ADMIN, Cp};
use std::time::Duration;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;
use tonic::Code;
use tonic::transport::Channel;

pub(crate) fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn client(cp: &Cp) -> AdminServiceClient<Channel> {
    AdminServiceClient::connect(cp.grpc.clone()).await.unwrap()
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, needle: &str) {
    let s = r.expect_err("the call must fail");
    assert_eq!(s.code(), code, "{s:?}");
    assert!(s.message().contains(needle), "{needle:?} not in {:?}", s.message());
}

#[tokio::test]
async fn the_admin_grpc_api_manages_budgets() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;

    let created = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "organization".into(),
                scope_id: "default".into(),
                limit_usd: Some("250.5".into()),
                window: "month".into(),
                alert_thresholds: vec!["0.8".into(), "0.5".into()],
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("bud_"));
    assert!(created.scope_id.starts_with("org_"), "stored as the org id: {created:?}");
    assert_eq!((created.limit_usd.as_str(), created.limit_tokens), ("250.50", None));
    assert_eq!((created.window.as_str(), created.on_breach.as_str()), ("month", "block"));
    assert_eq!(created.alert_thresholds_permille, [500, 800]);
    assert_eq!(
        (created.epoch, created.temporary_increase.as_str(), created.temporary_increase_until.as_deref()),
        (0, "", None)
    );
    let id = created.id.clone();

    let got = c.get_budget(authed(v1::GetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(got, created);

    let tokens = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "principal".into(),
                scope_id: "acme:1".into(),
                limit_tokens: Some(10_000),
                window: "day".into(),
                on_breach: Some("warn".into()),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((tokens.limit_usd.as_str(), tokens.limit_tokens), ("", Some(10_000)));

    let page = c
        .list_budgets(authed(v1::ListBudgetsRequest { limit: 1, ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.budgets.len(), 1);
    let next = page.next_after.clone().unwrap();
    let rest = c
        .list_budgets(authed(v1::ListBudgetsRequest { limit: 10, after: Some(next), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = page.budgets.iter().chain(&rest.budgets).map(|b| b.id.clone()).collect();
    assert_eq!(rest.next_after, None);
    ids.sort();
    let mut want = vec![id.clone(), tokens.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let principals = c
        .list_budgets(authed(v1::ListBudgetsRequest { scope: Some("principal".into()), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(principals.budgets, std::slice::from_ref(&tokens));

    let updated = c
        .update_budget(authed(
            v1::UpdateBudgetRequest {
                id: id.clone(),
                window: Some("week".into()),
                alert_thresholds: Some(v1::AlertThresholds { values: vec![] }),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.window.as_str(), updated.limit_usd.as_str()), ("week", "250.50"));
    assert!(updated.alert_thresholds_permille.is_empty(), "an empty list clears the thresholds");

    let increased = c
        .increase_budget(authed(
            v1::IncreaseBudgetRequest {
                id: id.clone(),
                amount_usd: Some("20".into()),
                duration_s: Some(3600),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(increased.temporary_increase, "20.00");
    assert!(increased.temporary_increase_until.is_some());
    let cleared = c
        .update_budget(authed(
            v1::UpdateBudgetRequest { id: id.clone(), clear_temporary_increase: true, ..Default::default() },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cleared.temporary_increase.as_str(), cleared.temporary_increase_until.as_deref()), ("", None));

    let reset = c.reset_budget(authed(v1::ResetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(reset.epoch, 1);
    let reset = c.reset_budget(authed(v1::ResetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(reset.epoch, 2);

    c.delete_budget(authed(v1::DeleteBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap();
    assert_status(c.get_budget(authed(v1::GetBudgetRequest { id: id.clone() }, ADMIN)).await, Code::NotFound, &id);

    let actions: Vec<String> = cp.budget_audit().await.into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(
        actions,
        [
            "budget.create",
            "budget.create",
            "budget.update",
            "budget.increase",
            "budget.update",
            "budget.reset",
            "budget.reset",
            "budget.delete"
        ]
    );
}

#[tokio::test]
async fn grpc_budget_errors_map_to_status_codes_naming_the_field() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;
    let create = |scope: &str, limit_usd: Option<&str>, window: &str| v1::CreateBudgetRequest {
        scope: scope.into(),
        scope_id: "x".into(),
        limit_usd: limit_usd.map(str::to_owned),
        window: window.into(),
        ..Default::default()
    };
    assert_status(
        c.create_budget(tonic::Request::new(create("principal", Some("1"), "day"))).await,
        Code::Unauthenticated,
        "admin token",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("1"), "day"), "wrong-token-0123456789")).await,
        Code::Unauthenticated,
        "admin token",
    );
    assert_status(
        c.create_budget(authed(create("galaxy", Some("1"), "day"), ADMIN)).await,
        Code::InvalidArgument,
        "scope",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("-1"), "day"), ADMIN)).await,
        Code::InvalidArgument,
        "limit_usd",
    );
    assert_status(
        c.create_budget(authed(create("principal", None, "day"), ADMIN)).await,
        Code::InvalidArgument,
        "limit_usd",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("1"), "yearly"), ADMIN)).await,
        Code::InvalidArgument,
        "window",
    );
    let mut bad_threshold = create("principal", Some("1"), "day");
    bad_threshold.alert_thresholds = vec!["1.5".into()];
    assert_status(c.create_budget(authed(bad_threshold, ADMIN)).await, Code::InvalidArgument, "alert_thresholds");
    assert_status(c.create_budget(authed(create("team", Some("1"), "day"), ADMIN)).await, Code::NotFound, "team \"x\"");

    let b = c.create_budget(authed(create("principal", Some("1"), "day"), ADMIN)).await.unwrap().into_inner();
    let past = v1::IncreaseBudgetRequest {
        id: b.id.clone(),
        amount_usd: Some("1".into()),
        expires_at: Some("2020-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert_status(c.increase_budget(authed(past, ADMIN)).await, Code::InvalidArgument, "expires_at");
    assert_status(
        c.reset_budget(authed(v1::ResetBudgetRequest { id: "bud_nope".into() }, ADMIN)).await,
        Code::NotFound,
        "bud_nope",
    );
    assert_status(
        c.delete_budget(authed(v1::DeleteBudgetRequest { id: "bud_nope".into() }, ADMIN)).await,
        Code::NotFound,
        "bud_nope",
    );
}

#[tokio::test]
async fn a_budget_change_reaches_a_watching_gateway_in_the_next_snapshot() {
    let cp = Cp::start().await;
    let mut watch = ConfigServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let mut stream = watch
        .watch(authed(v1::WatchRequest { since_revision: 0, accept_changes: false }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();

    let mut c = client(&cp).await;
    let b = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "principal".into(),
                scope_id: "acme:2".into(),
                limit_tokens: Some(77),
                window: "hour".into(),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    c.reset_budget(authed(v1::ResetBudgetRequest { id: b.id.clone() }, ADMIN)).await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = stream.message().await.unwrap().unwrap();
            let snap = msg.snapshot.unwrap();
            assert!(snap.revision > first.revision, "revisions only go forward");
            if let Some(budget) = snap.budgets.iter().find(|x| x.id == b.id)
                && budget.epoch == 1
            {
                return budget.clone();
            }
        }
    })
    .await
    .expect("the reset reaches the Watch stream");
    assert_eq!((seen.limit_tokens, seen.window.as_str(), seen.scope_id.as_str()), (Some(77), "hour", "acme:2"));
}
