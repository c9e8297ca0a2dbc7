# Test harness: drives Debian's ruby-aws-sdk-s3 encryption clients (EncryptionV2, and the legacy V1
# client for writing v1 objects). Reads one JSON request per line on stdin, answers "ok" or
# "error <class>: <message>" per line, so one Ruby start serves a whole test.
require 'json'
require 'openssl'
require 'aws-sdk-s3'
require 'aws-sdk-kms'

# Debian's aws-sdk-kms 1.24.0 predates Decrypt's KeyId member, which aws-sdk-s3 1.117.2 sends
# (shared/reference/client-side-formats.md §7): add it to the request model.
unless Aws::KMS::ClientApi::DecryptRequest.member?(:key_id)
  Aws::KMS::ClientApi::DecryptRequest.add_member(
    :key_id, Seahorse::Model::Shapes::ShapeRef.new(shape: Aws::KMS::ClientApi::KeyIdType, location_name: 'KeyId'))
end

def build(req)
  creds = Aws::Credentials.new(req['access_key'], req['secret_key'])
  s3 = Aws::S3::Client.new(endpoint: req['s3_url'], force_path_style: true, region: req['region'], credentials: creds)
  opts = { client: s3, envelope_location: (req['location'] || 'metadata').to_sym }
  case req['wrap']
  when 'kms'
    opts[:kms_client] = Aws::KMS::Client.new(endpoint: req['kms_url'], region: req['region'], credentials: creds)
    opts[:kms_key_id] = req['kms_key_id']
  when 'aes' then opts[:encryption_key] = [req['aes_key_hex']].pack('H*')
  when 'rsa' then opts[:encryption_key] = OpenSSL::PKey::RSA.new(File.read(req['rsa_pem']))
  end
  return Aws::S3::Encryption::Client.new(opts) if req['client'] == 'v1'
  opts[:key_wrap_schema] = { 'kms' => :kms_context, 'aes' => :aes_gcm, 'rsa' => :rsa_oaep_sha1 }.fetch(req['wrap'])
  opts[:content_encryption_schema] = :aes_gcm_no_padding
  opts[:security_profile] = :v2_and_legacy
  Aws::S3::EncryptionV2::Client.new(opts)
end

$stderr.reopen(File::NULL) # the legacy profile warns on every client
$stdout.sync = true
$stdin.each_line do |line|
  req = JSON.parse(line)
  begin
    client = build(req)
    extra = {}
    extra[:kms_encryption_context] = req['context'] if req['context'] && req['client'] != 'v1'
    if req['op'] == 'put'
      File.open(req['path'], 'rb') { |f| client.put_object(bucket: req['bucket'], key: req['key'], body: f, **extra) }
    else
      client.get_object(bucket: req['bucket'], key: req['key'], response_target: req['path'], **extra)
    end
    puts 'ok'
  rescue StandardError, NotImplementedError => e
    puts "error #{e.class}: #{e.message.to_s.gsub("\n", ' ')}"
  end
end
