with

source as (
    select * from {{ source('raw', 'user_profile_changed') }}
),

deduplicated as (
    {{ deduplicate_events('source') }}
),

final as (
    select
        {{ envelope_columns() }},
        event_at as changed_at,
        {{ iso_timestamp('payload.signed_up_at') }} as signed_up_at,
        payload.country,
        payload.plan,
        payload.marketing_channel
    from deduplicated
)

select * from final
