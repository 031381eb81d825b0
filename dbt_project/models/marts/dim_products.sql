with

versions as (
    select * from {{ ref('snap_products') }}
),

final as (
    select
        product_id,
        product_name,
        category,
        price,
        currency,
        is_active,
        dbt_valid_from as product_changed_at
    from versions
    where dbt_valid_to is null
)

select * from final
