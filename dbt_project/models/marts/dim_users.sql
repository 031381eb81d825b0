with

versions as (
    select * from {{ ref('snap_users') }}
),

final as (
    select
        user_id,
        signed_up_at,
        cast(date_trunc('week', signed_up_at) as date) as signup_week,
        country,
        plan,
        marketing_channel,
        dbt_valid_from as profile_changed_at
    from versions
    where dbt_valid_to is null
)

select * from final
