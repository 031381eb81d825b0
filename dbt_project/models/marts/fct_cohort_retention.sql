{#-
    Weekly retention by signup cohort: of the users who signed up in a week, how many were active in
    each later week of the data. Weeks are ISO weeks (Monday to Sunday, UTC).
-#}
with

users as (
    select * from {{ ref('dim_users') }}
),

events as (
    select * from {{ ref('int_events_unioned') }}
),

dates as (
    select * from {{ ref('dim_dates') }}
),

weeks as (
    select distinct week_start from dates
),

cohorts as (
    select
        signup_week,
        count(*) as cohort_size
    from users
    group by 1
),

-- Every week the data covers from the signup week on: a week nobody came back in is a 0, while
-- weeks before the data's first day are unknown and have no row.
cohort_weeks as (
    select
        cohorts.signup_week,
        cohorts.cohort_size,
        cast({{ divide(days_between('cohorts.signup_week', 'weeks.week_start'), 7) }} as integer) as weeks_since_signup
    from cohorts
    inner join weeks
        on cohorts.signup_week <= weeks.week_start
),

-- Activity before the signup week has no week in the cohort's life and is left out.
user_weeks as (
    select distinct
        users.signup_week,
        events.user_id,
        cast(floor({{ divide(days_between('users.signup_week', 'cast(events.event_at as date)'), 7) }}) as integer)
            as weeks_since_signup
    from events
    inner join users
        on events.user_id = users.user_id
    where cast(events.event_at as date) >= users.signup_week
),

active_users as (
    select
        signup_week,
        weeks_since_signup,
        count(*) as active_users
    from user_weeks
    group by 1, 2
),

final as (
    select
        cohort_weeks.signup_week,
        cohort_weeks.weeks_since_signup,
        cohort_weeks.cohort_size,
        coalesce(active_users.active_users, 0) as active_users,
        round({{ divide('coalesce(active_users.active_users, 0)', 'cohort_weeks.cohort_size') }}, 4) as retention_rate
    from cohort_weeks
    left join active_users
        on cohort_weeks.signup_week = active_users.signup_week
        and cohort_weeks.weeks_since_signup = active_users.weeks_since_signup
)

select * from final
