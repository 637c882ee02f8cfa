#!/usr/bin/env python3
"""Seed an AWS estate in a moto server and print what Palisade must find in it.

Usage:
    python3 estate.py --endpoint http://127.0.0.1:PORT --regions us-east-1,eu-west-1 [--scale N]

Writes are made strictly one after another (moto can fail on concurrent writes). When the
estate is seeded, the script reads it back with the describe/list calls and prints ONE JSON
object on stdout:

    {"account_id": "123456789012",
     "types": {"aws.ec2.instance": n, ...},          # every resource type, counted from the API
     "insights": {"aws-sg-ingress-22-world": n, ...},  # open findings per built-in insight, now
     "insights_at_plus_100d": {...}}                   # the same, evaluated 100 days from now

Counts are taken from what the API returns after seeding, so moto's own defaults (a default
VPC per region, a default security group per VPC, instance root volumes, terminated
instances it still describes, the customer-managed KMS key it creates for encrypted EBS
volumes) are included. Each
insight is evaluated here, from its definition in issue 2, over those same answers; the
script also checks that every variant it seeded got the verdict it was seeded for, and exits
non-zero when one did not.

The estate, per region: a VPC; compliant and non-compliant security groups (22 and 3389 open
to 0.0.0.0/0 and to ::/0, tcp and all protocols, port ranges covering them; 22 from
10.0.0.0/8, 80 from the world, udp 22 from the world); instances with and without an Owner
tag (one stopped, one terminated); encrypted and unencrypted volumes; public/private and
encrypted/unencrypted RDS instances (the first region holds more than one DescribeDBInstances
page of 100); KMS customer keys with rotation on, off, and one disabled. CloudTrail: a
logging multi-region trail homed in the first region, a single-region trail in each other
region. Account-wide, once: S3 buckets (public-read, authenticated-read, private; with and
without default encryption; one in the second region) and IAM users (with and without MFA,
with and without a console password, active and inactive access keys). One account can
only be one variant of aws-account-no-multi-region-trail: this one has a logging
multi-region trail (0 findings).

--scale N adds, per region, N security groups and N volumes, and N IAM users once.
"""

import argparse
import datetime as dt
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

OWNER_TAG = "Owner"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
WORLD4 = "0.0.0.0/0"
WORLD6 = "::/0"
AMI = "ami-12345678"  # moto accepts any well-formed image id
RDS_PAGE = 100  # Palisade's MaxRecords for DescribeDBInstances

INSIGHTS = [
    "aws-sg-ingress-22-world",
    "aws-sg-ingress-3389-world",
    "aws-s3-public-acl",
    "aws-s3-no-default-encryption",
    "aws-ec2-missing-owner-tag",
    "aws-ebs-unencrypted",
    "aws-iam-user-no-mfa",
    "aws-iam-console-user-no-mfa",
    "aws-iam-access-key-90d",
    "aws-rds-public",
    "aws-rds-unencrypted",
    "aws-kms-rotation-disabled",
    "aws-cloudtrail-not-multi-region",
    "aws-account-no-multi-region-trail",
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Estate:
    def __init__(self, endpoint, regions, scale):
        self.endpoint = endpoint
        self.regions = regions
        self.scale = scale
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.config = Config(retries={"max_attempts": 4, "mode": "standard"})
        # intended verdicts: (insight, resource id) -> True (finding) / False (compliant)
        self.intent = {}

    def client(self, service, region):
        return boto3.client(
            service, region_name=region, endpoint_url=self.endpoint, config=self.config
        )

    def expect(self, insight, resource, finding):
        self.intent[(insight, resource)] = finding

    # ---------------------------------------------------------------- seeding

    def seed(self):
        for i, region in enumerate(self.regions):
            log(f"seeding {region}")
            self.seed_ec2(i, region)
            self.seed_rds(i, region)
            self.seed_kms(i, region)
        log("seeding account-wide resources")
        self.seed_s3()
        self.seed_cloudtrail()
        self.seed_iam()

    def seed_ec2(self, i, region):
        ec2 = self.client("ec2", region)
        ec2.create_vpc(
            CidrBlock=f"10.{100 + i}.0.0/16",
            TagSpecifications=[
                {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"palisade-{region}"}]}
            ],
        )

        def sg(name, rules, bad22, bad3389):
            gid = ec2.create_security_group(GroupName=name, Description=f"estate {name}")["GroupId"]
            if rules:
                ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=rules)
            self.expect("aws-sg-ingress-22-world", gid, bad22)
            self.expect("aws-sg-ingress-3389-world", gid, bad3389)
            return gid

        def rule(proto, lo=None, hi=None, v4=(), v6=()):
            r = {"IpProtocol": proto}
            if lo is not None:
                r["FromPort"], r["ToPort"] = lo, hi
            if v4:
                r["IpRanges"] = [{"CidrIp": c} for c in v4]
            if v6:
                r["Ipv6Ranges"] = [{"CidrIpv6": c} for c in v6]
            return r

        sg("ssh-world", [rule("tcp", 22, 22, v4=[WORLD4])], True, False)
        sg("ssh-world6", [rule("tcp", 22, 22, v6=[WORLD6])], True, False)
        sg("rdp-world", [rule("tcp", 3389, 3389, v4=[WORLD4])], False, True)
        sg("rdp-world6", [rule("tcp", 3389, 3389, v6=[WORLD6])], False, True)
        sg("all-world", [rule("-1", v4=[WORLD4])], True, True)
        sg("all-world6", [rule("-1", v6=[WORLD6])], True, True)
        sg("low-range-world", [rule("tcp", 0, 1024, v4=[WORLD4])], True, False)
        sg("rdp-range-world6", [rule("tcp", 3000, 4000, v6=[WORLD6])], False, True)
        sg("ssh-private", [rule("tcp", 22, 22, v4=["10.0.0.0/8"])], False, False)
        sg("http-world", [rule("tcp", 80, 80, v4=[WORLD4], v6=[WORLD6])], False, False)
        sg("udp-ssh-world", [rule("udp", 22, 22, v4=[WORLD4])], False, False)
        sg("high-range-world", [rule("tcp", 23, 3388, v4=[WORLD4])], False, False)
        sg("no-ingress", [], False, False)
        for n in range(self.scale):
            sg(f"scale-{n}", [rule("tcp", 443, 443, v4=[WORLD4])], False, False)

        def instance(name, owner, then=None):
            tags = [{"Key": "Name", "Value": name}]
            if owner:
                tags.append({"Key": OWNER_TAG, "Value": "alice"})
            iid = ec2.run_instances(
                ImageId=AMI,
                MinCount=1,
                MaxCount=1,
                InstanceType="t3.micro",
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )["Instances"][0]["InstanceId"]
            if then == "stop":
                ec2.stop_instances(InstanceIds=[iid])
            elif then == "terminate":
                ec2.terminate_instances(InstanceIds=[iid])
            self.expect("aws-ec2-missing-owner-tag", iid, not owner and then != "terminate")

        instance("owned", True)
        instance("unowned", False)
        instance("stopped-unowned", False, "stop")
        instance("terminated-unowned", False, "terminate")
        instance("terminated-owned", True, "terminate")

        zone = f"{region}a"
        enc = ec2.create_volume(AvailabilityZone=zone, Size=8, Encrypted=True)["VolumeId"]
        plain = ec2.create_volume(AvailabilityZone=zone, Size=8, Encrypted=False)["VolumeId"]
        self.expect("aws-ebs-unencrypted", enc, False)
        self.expect("aws-ebs-unencrypted", plain, True)
        for n in range(self.scale):
            ec2.create_volume(AvailabilityZone=zone, Size=1, Encrypted=(n % 2 == 0))

    def seed_rds(self, i, region):
        rds = self.client("rds", region)

        def db(ident, public, encrypted):
            rds.create_db_instance(
                DBInstanceIdentifier=ident,
                Engine="postgres",
                DBInstanceClass="db.t3.micro",
                AllocatedStorage=20,
                MasterUsername="palisade",
                MasterUserPassword="not-a-secret-1",
                PubliclyAccessible=public,
                StorageEncrypted=encrypted,
                Tags=[{"Key": "Name", "Value": ident}],
            )
            self.expect("aws-rds-public", ident, public)
            self.expect("aws-rds-unencrypted", ident, not encrypted)

        db(f"db-public-plain-{i}", True, False)
        db(f"db-private-encrypted-{i}", False, True)
        db(f"db-public-encrypted-{i}", True, True)
        db(f"db-private-plain-{i}", False, False)
        if i == 0:
            # more than one DescribeDBInstances page
            for n in range(RDS_PAGE + 1 - 4):
                db(f"db-page-{n:03d}", False, True)

    def seed_kms(self, i, region):
        kms = self.client("kms", region)

        def key(name, rotation, disabled=False):
            kid = kms.create_key(Description=name)["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=f"alias/palisade-{name}", TargetKeyId=kid)
            if rotation:
                kms.enable_key_rotation(KeyId=kid)
            if disabled:
                kms.disable_key(KeyId=kid)
            self.expect("aws-kms-rotation-disabled", kid, not rotation and not disabled)

        key("rotated", True)
        key("unrotated", False)
        key("disabled", False, disabled=True)

    def seed_s3(self):
        first = self.regions[0]
        s3 = self.client("s3", first)

        def bucket(name, acl, encrypted, region=first):
            client = self.client("s3", region)
            kwargs = {"Bucket": name, "ACL": acl}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            client.create_bucket(**kwargs)
            if encrypted:
                client.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                    },
                )
            else:
                # a recent moto may encrypt every new bucket by default: undo it
                try:
                    client.delete_bucket_encryption(Bucket=name)
                except ClientError:
                    pass
            self.expect("aws-s3-public-acl", name, acl in ("public-read", "authenticated-read"))
            self.expect("aws-s3-no-default-encryption", name, not encrypted)
            return name

        bucket("palisade-public-read", "public-read", False)
        bucket("palisade-authenticated-read", "authenticated-read", True)
        bucket("palisade-private-encrypted", "private", True)
        bucket("palisade-private-plain", "private", False)
        self.trail_bucket = bucket("palisade-trails", "private", True)
        other = self.regions[1] if len(self.regions) > 1 else first
        bucket(f"palisade-private-{other}", "private", True, region=other)
        s3.put_public_access_block(
            Bucket="palisade-private-encrypted",
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_versioning(
            Bucket="palisade-private-encrypted", VersioningConfiguration={"Status": "Enabled"}
        )

    def seed_cloudtrail(self):
        for i, region in enumerate(self.regions):
            ct = self.client("cloudtrail", region)
            if i == 0:
                arn = ct.create_trail(
                    Name="palisade-multi", S3BucketName=self.trail_bucket, IsMultiRegionTrail=True
                )["TrailARN"]
                ct.start_logging(Name="palisade-multi")  # moto wants the name
                self.expect("aws-cloudtrail-not-multi-region", arn, False)
            else:
                arn = ct.create_trail(
                    Name=f"palisade-single-{region}", S3BucketName=self.trail_bucket
                )["TrailARN"]
                self.expect("aws-cloudtrail-not-multi-region", arn, True)

    def seed_iam(self):
        iam = self.client("iam", self.regions[0])

        def user(name, console, mfa, keys):
            iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": "estate"}])
            if console:
                iam.create_login_profile(UserName=name, Password="N0t-a-real-password!")
            if mfa:
                serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-mfa")[
                    "VirtualMFADevice"
                ]["SerialNumber"]
                iam.enable_mfa_device(
                    UserName=name,
                    SerialNumber=serial,
                    AuthenticationCode1="123456",
                    AuthenticationCode2="654321",
                )
            for status in keys:
                kid = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
                if status != "Active":
                    iam.update_access_key(UserName=name, AccessKeyId=kid, Status=status)
            self.expect("aws-iam-user-no-mfa", name, not mfa)
            self.expect("aws-iam-console-user-no-mfa", name, console and not mfa)

        user("alice", console=True, mfa=True, keys=["Active"])
        user("bob", console=True, mfa=False, keys=["Active", "Inactive"])
        user("carol", console=False, mfa=False, keys=["Active"])
        user("dave", console=False, mfa=True, keys=["Inactive"])
        user("erin", console=False, mfa=False, keys=[])
        for n in range(self.scale):
            user(f"scale-user-{n}", console=False, mfa=False, keys=[])

    # ---------------------------------------------------------------- reading back

    def observe(self):
        """Count every type and evaluate every insight over the API's answers."""
        types = {}
        found = {name: set() for name in INSIGHTS}
        key_dates = []  # (user, create date) of active keys

        def add(rtype, n):
            types[rtype] = types.get(rtype, 0) + n

        for region in self.regions:
            ec2 = self.client("ec2", region)
            instances = [
                inst
                for page in ec2.get_paginator("describe_instances").paginate()
                for res in page["Reservations"]
                for inst in res["Instances"]
            ]
            add("aws.ec2.instance", len(instances))
            for inst in instances:
                tags = {t["Key"] for t in inst.get("Tags", [])}
                if inst["State"]["Name"] != "terminated" and OWNER_TAG not in tags:
                    found["aws-ec2-missing-owner-tag"].add(inst["InstanceId"])
            groups = ec2.describe_security_groups()["SecurityGroups"]
            add("aws.ec2.security-group", len(groups))
            for g in groups:
                for port, insight in ((22, "aws-sg-ingress-22-world"), (3389, "aws-sg-ingress-3389-world")):
                    if any(sg_rule_opens(p, port) for p in g.get("IpPermissions", [])):
                        found[insight].add(g["GroupId"])
            volumes = ec2.describe_volumes()["Volumes"]
            add("aws.ec2.volume", len(volumes))
            for v in volumes:
                if not v["Encrypted"]:
                    found["aws-ebs-unencrypted"].add(v["VolumeId"])
            add("aws.ec2.vpc", len(ec2.describe_vpcs()["Vpcs"]))

            rds = self.client("rds", region)
            dbs = [
                d
                for page in rds.get_paginator("describe_db_instances").paginate()
                for d in page["DBInstances"]
            ]
            add("aws.rds.db-instance", len(dbs))
            for d in dbs:
                if d["PubliclyAccessible"]:
                    found["aws-rds-public"].add(d["DBInstanceIdentifier"])
                if not d["StorageEncrypted"]:
                    found["aws-rds-unencrypted"].add(d["DBInstanceIdentifier"])

            kms = self.client("kms", region)
            keys = [k for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]]
            add("aws.kms.key", len(keys))
            for k in keys:
                meta = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
                if meta["KeyManager"] == "CUSTOMER" and meta["KeyState"] == "Enabled":
                    if not kms.get_key_rotation_status(KeyId=k["KeyId"])["KeyRotationEnabled"]:
                        found["aws-kms-rotation-disabled"].add(k["KeyId"])

        trails = {}
        for region in self.regions:
            ct = self.client("cloudtrail", region)
            for t in ct.describe_trails()["trailList"]:
                trails[t["TrailARN"]] = t
        homed = [t for t in trails.values() if t["HomeRegion"] in self.regions]
        add("aws.cloudtrail.trail", len(homed))
        logging_multi = False
        for t in trails.values():
            status = self.client("cloudtrail", t["HomeRegion"]).get_trail_status(Name=t["TrailARN"])
            if t["IsMultiRegionTrail"] and status["IsLogging"]:
                logging_multi = True
        for t in homed:
            if not t["IsMultiRegionTrail"]:
                found["aws-cloudtrail-not-multi-region"].add(t["TrailARN"])

        sts = self.client("sts", self.regions[0])
        account_id = sts.get_caller_identity()["Account"]
        add("aws.account", 1)
        if not logging_multi:
            found["aws-account-no-multi-region-trail"].add(account_id)

        s3 = self.client("s3", self.regions[0])
        buckets = s3.list_buckets()["Buckets"]
        add("aws.s3.bucket", len(buckets))
        for b in buckets:
            name = b["Name"]
            grants = s3.get_bucket_acl(Bucket=name)["Grants"]
            if any(g["Grantee"].get("URI") in (ALL_USERS, AUTH_USERS) for g in grants):
                found["aws-s3-public-acl"].add(name)
            try:
                s3.get_bucket_encryption(Bucket=name)
            except ClientError:
                found["aws-s3-no-default-encryption"].add(name)

        iam = self.client("iam", self.regions[0])
        users = [u for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]
        add("aws.iam.user", len(users))
        for u in users:
            name = u["UserName"]
            mfa = iam.list_mfa_devices(UserName=name)["MFADevices"]
            try:
                iam.get_login_profile(UserName=name)
                console = True
            except ClientError:
                console = False
            if not mfa:
                found["aws-iam-user-no-mfa"].add(name)
                if console:
                    found["aws-iam-console-user-no-mfa"].add(name)
            for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                if k["Status"] == "Active":
                    key_dates.append((name, k["CreateDate"]))

        def aged(now):
            return {user for user, created in key_dates if created < now - dt.timedelta(days=90)}

        now = dt.datetime.now(dt.timezone.utc)
        insights = {name: len(found[name]) for name in INSIGHTS}
        insights["aws-iam-access-key-90d"] = len(aged(now))
        later = dict(insights)
        later["aws-iam-access-key-90d"] = len(aged(now + dt.timedelta(days=100)))
        return account_id, types, insights, later, found

    def check_intent(self, found):
        wrong = [
            f"{insight} {resource}: seeded as {'finding' if want else 'compliant'}"
            for (insight, resource), want in sorted(self.intent.items())
            if (resource in found[insight]) != want
        ]
        if wrong:
            for w in wrong:
                log("estate mismatch:", w)
            raise SystemExit(f"{len(wrong)} seeded variants did not get their intended verdict")


def sg_rule_opens(perm, port):
    """Whether one ingress permission opens `port` (tcp or all protocols) to the world."""
    proto = perm.get("IpProtocol")
    if proto == "-1":
        covers = True
    elif proto in ("tcp", "6"):
        lo, hi = perm.get("FromPort"), perm.get("ToPort")
        covers = lo is not None and hi is not None and lo <= port <= hi
    else:
        covers = False
    world = any(r.get("CidrIp") == WORLD4 for r in perm.get("IpRanges", [])) or any(
        r.get("CidrIpv6") == WORLD6 for r in perm.get("Ipv6Ranges", [])
    )
    return covers and world


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT of a moto server")
    parser.add_argument("--regions", default="us-east-1,eu-west-1", help="comma-separated, two or more")
    parser.add_argument("--scale", type=int, default=0, help="extra SGs and volumes per region, and users")
    args = parser.parse_args()
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if not regions:
        parser.error("--regions names no region")
    estate = Estate(args.endpoint, regions, args.scale)
    estate.seed()
    account_id, types, insights, later, found = estate.observe()
    estate.check_intent(found)
    json.dump(
        {
            "account_id": account_id,
            "types": types,
            "insights": insights,
            "insights_at_plus_100d": later,
        },
        sys.stdout,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
