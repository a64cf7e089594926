//! Names to IDs: products and device groups may be named on the command line;
//! the API takes IDs.

use anyhow::Context;
use sevenfold_core::api::{GroupInfo, ProductInfo};

use super::{looks_like_uuid, Client};

impl Client {
    /// A product of `tenant` by ID or name.
    pub(crate) async fn resolve_product(
        &self,
        tenant: &str,
        value: &str,
    ) -> anyhow::Result<ProductInfo> {
        if looks_like_uuid(value) {
            return self.get(&["tenants", tenant, "products", value], &[]).await;
        }
        let products: Vec<ProductInfo> = self.get(&["tenants", tenant, "products"], &[]).await?;
        products
            .into_iter()
            .find(|p| p.name == value)
            .with_context(|| {
                format!("no product named {value:?} in this tenant; `sevenfold product list` shows them")
            })
    }

    /// A device group of `tenant` by ID, by `PRODUCT/GROUP` name, or by group
    /// name alone when only one product has a group of that name.
    pub(crate) async fn resolve_group(
        &self,
        tenant: &str,
        value: &str,
    ) -> anyhow::Result<GroupInfo> {
        if looks_like_uuid(value) {
            return self
                .get(&["tenants", tenant, "device-groups", value], &[])
                .await;
        }
        let products: Vec<ProductInfo> = self.get(&["tenants", tenant, "products"], &[]).await?;
        let mut matches = find_groups(&products, value);
        if matches.len() == 1 {
            if let Some((_, group)) = matches.pop() {
                return Ok(group);
            }
        }
        match matches.len() {
            0 => anyhow::bail!(
                "no device group {value:?} in this tenant; name it as PRODUCT/GROUP \
                 (e.g. \"Thermostat/Field Test\") or by ID; `sevenfold device-group list` shows them"
            ),
            _ => {
                let names: Vec<String> = matches.iter().map(|(p, g)| format!("{p}/{}", g.name)).collect();
                anyhow::bail!(
                    "{value:?} names several device groups ({}); name one as PRODUCT/GROUP or by ID",
                    names.join(", ")
                )
            }
        }
    }
}

/// Groups named `value`: `PRODUCT/GROUP` (product names may themselves hold
/// a `/`) or a bare group name. Returns (product name, group).
fn find_groups(products: &[ProductInfo], value: &str) -> Vec<(String, GroupInfo)> {
    let mut found = Vec::new();
    for product in products {
        let in_product = value
            .strip_prefix(product.name.as_str())
            .and_then(|rest| rest.strip_prefix('/'));
        for group in &product.device_groups {
            if in_product == Some(group.name.as_str()) {
                found.push((product.name.clone(), group.clone()));
            }
        }
    }
    if found.is_empty() && !value.contains('/') {
        for product in products {
            for group in product.device_groups.iter().filter(|g| g.name == value) {
                found.push((product.name.clone(), group.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, name: &str) -> GroupInfo {
        GroupInfo {
            id: id.into(),
            product_id: "p".into(),
            name: name.into(),
            description: String::new(),
            update_policy: "accept-all".into(),
            runtime_feed: "stable".into(),
            rollout_percent: 100,
            crash_details: false,
            created_at: String::new(),
            update_window: None,
        }
    }

    fn product(name: &str, groups: Vec<GroupInfo>) -> ProductInfo {
        ProductInfo {
            id: name.into(),
            name: name.into(),
            description: String::new(),
            created_at: String::new(),
            device_groups: groups,
        }
    }

    fn ids(found: &[(String, GroupInfo)]) -> Vec<&str> {
        found.iter().map(|(_, g)| g.id.as_str()).collect()
    }

    #[test]
    fn groups_are_found_by_product_and_name() {
        let products = vec![
            product(
                "Lamp",
                vec![group("1", "Field Test"), group("2", "Production")],
            ),
            product("Lamp/Pro", vec![group("3", "Field Test")]),
            product(
                "Thermostat",
                vec![group("4", "Field Test"), group("5", "Beta")],
            ),
        ];
        assert_eq!(ids(&find_groups(&products, "Lamp/Field Test")), ["1"]);
        assert_eq!(ids(&find_groups(&products, "Lamp/Pro/Field Test")), ["3"]);
        assert_eq!(ids(&find_groups(&products, "Beta")), ["5"]);
        assert_eq!(ids(&find_groups(&products, "Field Test")), ["1", "3", "4"]);
        assert!(find_groups(&products, "Lamp/Beta").is_empty());
        assert!(find_groups(&products, "Nothing").is_empty());
    }
}
