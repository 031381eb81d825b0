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
        payload.page as page,
        payload.referrer as referrer,
        payload.product_id as product_id
    from deduplicated
)

select * from final
