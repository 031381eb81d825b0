with

source as (
    select * from {{ source('raw', 'user_visit') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        payload.page,
        payload.referrer,
        payload.product_id
    from deduplicated
)

select * from final
