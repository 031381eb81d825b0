with

source as (
    select * from {{ source('raw', 'app_error') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        payload.error_code,
        payload.message,
        payload.page
    from deduplicated
)

select * from final
